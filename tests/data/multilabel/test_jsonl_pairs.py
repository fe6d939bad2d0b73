"""Bring-your-own folder with pairs.jsonl: happy path, class order and every kind of bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.multilabel.jsonl_pairs import load_jsonl_pairs, unreadable_images


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 32, 3), value, dtype=np.uint8)).save(path)


def _folder(tmp_path: Path, lines: list[str]) -> Path:
    root = tmp_path / "mine"
    _jpeg(root / "img" / "a.jpg", 10)
    _jpeg(root / "img" / "b.jpg", 20)
    _jpeg(root / "c.png", 30)
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return root


GOOD = [
    json.dumps({"image": "img/a.jpg", "captions": ["a dog", "a brown dog"], "labels": ["dog"]}),
    "",
    json.dumps({"image": "img/b.jpg", "caption": "a person with a dog", "labels": ["person", "dog"]}),
    json.dumps({"image": "c.png", "caption": "a cat", "labels": "cat"}),
]


def test_happy_path_sorted_classes(tmp_path: Path) -> None:
    data = load_jsonl_pairs(_folder(tmp_path, GOOD))
    assert data.name == "jsonl" and len(data) == 3
    assert data.class_names == ["cat", "dog", "person"]
    np.testing.assert_array_equal(data.labels, [[0, 1, 0], [0, 1, 1], [1, 0, 0]])
    assert data.captions == [["a dog", "a brown dog"], ["a person with a dog"], ["a cat"]]
    batch = data.require_images().load([0, 1, 2], 8)
    assert batch[:, 0, 0, 0].tolist() == [10, 20, 30]
    assert data.info["class_order"] == "sorted label names" and data.info["skipped"]["unreadable_image"] == 0


def test_classes_file_fixes_the_order(tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD)
    (root / "classes.txt").write_text("person\n\ndog\ncat\nbird\n")
    data = load_jsonl_pairs(root)
    assert data.class_names == ["person", "dog", "cat", "bird"]
    np.testing.assert_array_equal(data.labels, [[0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]])


def test_unknown_labels_with_classes_file(tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD)
    (root / "classes.txt").write_text("dog\ncat\n")
    with pytest.raises(CrossforgetError, match=r"missing from .*classes.txt: line 3: \['person'\]"):
        load_jsonl_pairs(root)
    (root / "classes.txt").write_text("dog\ncat\ndog\n")
    with pytest.raises(CrossforgetError, match=r"lists class\(es\) \['dog'\] more than once"):
        load_jsonl_pairs(root)


def test_malformed_lines_are_listed_with_numbers(tmp_path: Path) -> None:
    lines = [
        GOOD[0],
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"caption": "x", "labels": ["dog"]}),
        json.dumps({"image": "c.png", "caption": "x", "captions": ["y"], "labels": ["dog"]}),
        json.dumps({"image": "c.png", "captions": [], "labels": ["dog"]}),
        json.dumps({"image": "c.png", "caption": "x", "labels": []}),
        json.dumps({"image": "c.png", "caption": "x"}),
    ]
    with pytest.raises(CrossforgetError) as error:
        load_jsonl_pairs(_folder(tmp_path, lines))
    message = str(error.value)
    assert "7 malformed line(s)" in message
    assert "line 2: not valid JSON" in message and "line 3: must be a JSON object" in message
    assert 'line 4: needs "image"' in message and "line 5: needs exactly one of" in message
    assert "line 6: captions must be" in message and "(and 2 more)" in message


def test_missing_images_list_the_first_few(tmp_path: Path) -> None:
    lines = [json.dumps({"image": f"gone/{k}.jpg", "caption": "x", "labels": ["a"]}) for k in range(8)]
    with pytest.raises(CrossforgetError) as error:
        load_jsonl_pairs(_folder(tmp_path, [GOOD[0], *lines]))
    message = str(error.value)
    assert message.startswith("8 image file(s) named in")
    assert "line 2: gone/0.jpg" in message and "line 6: gone/4.jpg" in message
    assert "gone/5.jpg" not in message and "(and 3 more)" in message


def test_missing_pairs_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(CrossforgetError, match="pairs.jsonl not found; a jsonl dataset is a folder"):
        load_jsonl_pairs(tmp_path)
    (tmp_path / "pairs.jsonl").write_text("\n\n")
    with pytest.raises(CrossforgetError, match="has no items"):
        load_jsonl_pairs(tmp_path)


def test_undecodable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD)
    (root / "img" / "b.jpg").write_bytes(b"<html>404</html>")
    data = load_jsonl_pairs(root)
    assert len(data) == 2 and data.info["skipped"]["unreadable_image"] == 1
    assert data.info["unreadable_examples"] == [str(root / "img" / "b.jpg")]
    assert data.captions == [["a dog", "a brown dog"], ["a cat"]]


def test_truncated_image_is_replaced_mid_epoch_not_fatal(tmp_path: Path) -> None:
    root = _folder(tmp_path, GOOD)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG"
    )
    encoded = buffer.getvalue()
    start_of_scan = encoded.index(b"\xff\xda")
    (root / "img" / "a.jpg").write_bytes(encoded[: start_of_scan + 40])  # header intact, pixels cut off
    assert unreadable_images([root / "img" / "a.jpg"]) == []
    data = load_jsonl_pairs(root)
    batch = data.images.load([0, 1], 8)
    assert data.images.failed == {0} and (batch[0] == 127).all() and batch[1, 0, 0, 0] == 20
