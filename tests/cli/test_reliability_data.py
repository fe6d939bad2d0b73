"""Checkpoints carry a fingerprint of their training data and refuse changed data (issue 11, part 3).

Before: reordering classes.txt or shuffling pairs.jsonl gave silently wrong numbers (exit 0) and
removing a class crashed with a RuntimeError.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossforget.data.container import FileImages, MultiModalData
from crossforget.data.fingerprint import data_fingerprint, fingerprint_change
from tests.reliability import JSONL_CLASSES, assert_clean_error, jsonl_train_args, make_jsonl, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, checkpoint) of a one-epoch model on a small jsonl dataset."""
    work = tmp_path_factory.mktemp("data")
    root = make_jsonl(work / "data")
    out = work / "K"
    argv = ["train", *jsonl_train_args(root), "--bits", "16", "--epochs", "1", "--out", out]
    assert run_cli(argv) == 0
    return root, out


@pytest.fixture
def data(trained: tuple[Path, Path]):
    """The data root; whatever a test changes in it is put back afterwards."""
    root, _ = trained
    saved = {p: p.read_bytes() for p in (root / "pairs.jsonl", root / "classes.txt")}
    yield root
    for path, content in saved.items():
        path.write_bytes(content)


def _lines(root: Path) -> list[str]:
    return (root / "pairs.jsonl").read_text().splitlines()


def _write(root: Path, lines: list[str]) -> None:
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")


def _reorder_classes(root: Path) -> None:
    (root / "classes.txt").write_text("\n".join(["cat", "dog", "person", "boat"]) + "\n")


def _shuffle_pairs(root: Path) -> None:
    lines = _lines(root)
    random.Random(1).shuffle(lines)
    _write(root, lines)


def _remove_class(root: Path) -> None:
    (root / "classes.txt").write_text("dog\ncat\nperson\n")
    records = [json.loads(line) for line in _lines(root)]
    for record in records:
        record["labels"] = [label for label in record["labels"] if label != "boat"] or ["cat"]
    _write(root, [json.dumps(record) for record in records])


def _relabel(root: Path) -> None:
    lines = _lines(root)
    record = json.loads(lines[5])
    record["labels"] = ["boat"] if record["labels"] != ["boat"] else ["cat"]
    _write(root, [*lines[:5], json.dumps(record), *lines[6:]])


def _drop_item(root: Path) -> None:
    _write(root, _lines(root)[:-1])


def _recaption(root: Path) -> None:
    lines = _lines(root)
    record = json.loads(lines[0])
    record["caption"] = "something else entirely"
    _write(root, [json.dumps(record), *lines[1:]])


CHANGES = [
    (_reorder_classes, "class order changed (position 0: 'dog' at training, 'cat' now"),
    (_shuffle_pairs, "same items are in another order"),
    (_remove_class, "classes changed (removed ['boat'])"),
    (_relabel, "item ids or labels changed"),
    (_drop_item, "number of items changed (48 at training, 47 now)"),
    (_recaption, "captions changed"),
]


def test_the_fingerprint_is_recorded(trained: tuple[Path, Path]) -> None:
    _, checkpoint = trained
    config = json.loads((checkpoint / "bits16" / "config.json").read_text())
    recorded = config["data_fingerprint"]
    assert recorded["classes"] == JSONL_CLASSES and recorded["items"] == 48
    assert len(recorded["items_sha256"]) == 64


@pytest.mark.parametrize(("change", "message"), CHANGES, ids=[c[0].__name__ for c in CHANGES])
@pytest.mark.parametrize("command", ["evaluate", "unlearn"])
def test_changed_data_is_refused(change, message, command, data: Path, trained, tmp_path: Path, capsys):
    _, checkpoint = trained
    change(data)
    argv = [command, "--checkpoint", checkpoint, "--forget", "dog", "--out", tmp_path / "out"]
    err = assert_clean_error(argv, capsys, [checkpoint, tmp_path], message, before_work=False)
    assert "is not what it was trained on" in err


def test_unchanged_data_still_evaluates(data: Path, trained, tmp_path: Path) -> None:
    _, checkpoint = trained
    assert run_cli(["evaluate", "--checkpoint", checkpoint, "--forget", "dog", "--out", tmp_path]) == 0


def _fake(labels: np.ndarray, names: list[str]) -> MultiModalData:
    paths = [Path(f"/data/{n}.jpg") for n in names]
    captions = [[f"caption {n}"] for n in names]
    return MultiModalData(
        "fake", ["a", "b", "c"], labels, captions, FileImages(paths), info={"root": "/data"}
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_reordering_or_relabelling_is_told_apart(draw) -> None:
    n = draw.draw(st.integers(2, 12))
    labels = np.array(
        draw.draw(st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), min_size=n, max_size=n))
    )
    names = [f"img{i}" for i in range(n)]
    recorded = data_fingerprint(_fake(labels, names))
    assert fingerprint_change(recorded, _fake(labels, names)) is None
    order = draw.draw(st.permutations(range(n)))
    if list(order) != list(range(n)):
        assert "another order" in fingerprint_change(
            recorded, _fake(labels[order], [names[i] for i in order])
        )
    row, column = draw.draw(st.integers(0, n - 1)), draw.draw(st.integers(0, 2))
    edited = labels.copy()
    edited[row, column] ^= 1
    assert "labels changed" in fingerprint_change(recorded, _fake(edited, names))


def test_checkpoints_without_a_fingerprint_still_check_their_classes() -> None:
    data = _fake(np.eye(3, dtype=np.uint8), ["x", "y", "z"])
    assert fingerprint_change({"classes": ["a", "b", "c"]}, data) is None
    assert "class order changed" in fingerprint_change({"classes": ["b", "a", "c"]}, data)
