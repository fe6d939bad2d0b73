"""NUS-WIDE loader on small synthetic trees in the layout of the official release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.multilabel.nuswide import NusWide, image_relpath, load_nuswide, read_binary_rows

TAGS = ["beach", "cat", "sky", "sun"]


def _write_tree(
    root: Path, concepts: list[str], labels: np.ndarray, tags: np.ndarray, names: list[str]
) -> None:
    """Files as the release ships them: Windows paths, CRLF label files, tab-separated tag rows."""
    (root / "ImageList").mkdir(parents=True)
    (root / "ImageList" / "Imagelist.txt").write_text("".join(f"C:\\ImageData\\Flickr\\{n}\n" for n in names))
    (root / "ConceptsList").mkdir()
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    label_dir = root / "Groundtruth" / "AllLabels"
    label_dir.mkdir(parents=True)
    for j, concept in enumerate(concepts):
        (label_dir / f"Labels_{concept}.txt").write_bytes(b"".join(b"%d\r\n" % v for v in labels[:, j]))
    (root / "NUS_WID_Tags").mkdir()
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(TAGS) + "\n")
    rows = "".join("\t".join(str(v) for v in row) + "\t\n" for row in tags)
    (root / "NUS_WID_Tags" / "AllTags1k.txt").write_text(rows)


def _small(tmp_path: Path) -> Path:
    """Three concepts, five images; with num_concepts=2 'bird' (1 image) is the one left out."""
    concepts = ["animal", "bird", "sky"]
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=np.uint8)
    tags = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.uint8)
    names = [
        "animal\\0001_11.jpg",
        "bird\\0001_12.jpg",
        "sky\\0001_13.jpg",
        "sky\\0002_14.jpg",
        "sky\\0003_15.jpg",
    ]
    root = tmp_path / "nus"
    _write_tree(root, concepts, labels, tags, names)
    return root


def test_small_tree_by_hand(tmp_path: Path) -> None:
    data = NusWide(_small(tmp_path), num_concepts=2)
    assert data.class_names == ["animal", "sky"]
    # image 1 only has the dropped concept, image 3 has no tag, image 4 no concept at all
    np.testing.assert_array_equal(data.labels, [[1, 0], [1, 1]])
    np.testing.assert_array_equal(data.tags, [[1, 0, 0, 0], [0, 0, 1, 1]])
    assert data.captions == [["beach"], ["sky sun"]]
    assert data.image_paths == ["animal/0001_11.jpg", "sky/0001_13.jpg"]
    assert data.skipped == 3 and data.info["skipped_no_concept"] == 2 and data.info["skipped_no_tag"] == 1
    assert data.info["concept_counts"] == {"animal": 2, "sky": 2}
    assert data.images is None and "no image modality" in data.info["images"]
    converted = data.to_multimodal()
    assert converted.name == "nuswide" and len(converted) == 2 and converted.images is None


def test_images_from_the_flickr_folder(tmp_path: Path) -> None:
    root = _small(tmp_path)
    flickr = root / "Flickr"
    (flickr / "Animal").mkdir(parents=True)  # re-cased folder still matches the Windows list
    Image.fromarray(np.full((10, 10, 3), 200, dtype=np.uint8)).save(flickr / "Animal" / "0001_11.jpg")
    data = load_nuswide(root, num_concepts=2)
    assert len(data) == 1 and data.info["skipped_missing_image"] == 1
    assert data.require_images().load([0], 4)[0, 0, 0, 0] == 200
    (flickr / "sky").mkdir()
    (flickr / "sky" / "0001_13.jpg").write_bytes(b"\xff\xd8 broken")
    data = NusWide(root, num_concepts=2)
    assert data.image_paths == ["animal/0001_11.jpg"] and data.info["skipped_unreadable_image"] == 1
    (flickr / "Animal" / "0001_11.jpg").unlink()
    (flickr / "sky" / "0001_13.jpg").unlink()
    with pytest.raises(CrossforgetError, match="none of the images listed"):
        NusWide(root, num_concepts=2)


def test_top_21_of_25_concepts_against_a_plain_python_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    concepts = [f"concept{j:02d}" for j in range(25)]
    labels = (rng.random((60, 25)) < rng.uniform(0.02, 0.4, size=25)).astype(np.uint8)
    tags = (rng.random((60, 4)) < 0.3).astype(np.uint8)
    root = tmp_path / "nus"
    _write_tree(root, concepts, labels, tags, [f"c\\{i:04d}_{i}.jpg" for i in range(60)])
    data = NusWide(root)
    counts = [sum(int(labels[i][j]) for i in range(60)) for j in range(25)]
    top = sorted(sorted(range(25), key=lambda j: (-counts[j], j))[:21])
    kept = [i for i in range(60) if any(labels[i][j] for j in top) and any(tags[i])]
    assert data.class_names == [concepts[j] for j in top]
    np.testing.assert_array_equal(data.labels, labels[np.ix_(kept, top)])
    np.testing.assert_array_equal(data.tags, tags[kept])
    assert len(data) == len(kept) and data.skipped == 60 - len(kept)


def test_concept_order_from_file_names_without_the_concept_list(tmp_path: Path) -> None:
    root = _small(tmp_path)
    (root / "ConceptsList" / "Concepts81.txt").unlink()
    assert NusWide(root, num_concepts=3).class_names == ["animal", "bird", "sky"]


def test_read_binary_rows_blocks_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crossforget.data.multilabel.nuswide as nuswide

    rng = np.random.default_rng(0)
    matrix = (rng.random((50, 7)) < 0.5).astype(np.uint8)
    path = tmp_path / "m.txt"
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in matrix) + "\n\n")
    monkeypatch.setattr(nuswide, "_BLOCK_BYTES", 17)  # many blocks, lines cut across them
    np.testing.assert_array_equal(read_binary_rows(path, 7), matrix)
    path.write_text("0 1\n1 1")  # no final newline
    np.testing.assert_array_equal(read_binary_rows(path, 2), [[0, 1], [1, 1]])
    path.write_text("0 1\n1\n1 0\n")
    with pytest.raises(CrossforgetError, match="line 2 has 1 values, expected 2"):
        read_binary_rows(path, 2)
    path.write_text("0 1\n\n1 0\n")
    with pytest.raises(CrossforgetError, match="line 2 has 0 values"):
        read_binary_rows(path, 2)
    path.write_text("0 1\n1 2\n")
    with pytest.raises(CrossforgetError, match="line 2: unexpected character '2'"):
        read_binary_rows(path, 2)


def test_image_relpath() -> None:
    assert image_relpath("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg\r") == "actor/0001_2124494179.jpg"
    assert image_relpath("actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert image_relpath("D:\\actor\\x.jpg") == "actor/x.jpg"


def test_layout_and_count_mismatches(tmp_path: Path) -> None:
    root = _small(tmp_path)
    (root / "Groundtruth" / "AllLabels" / "Labels_bird.txt").write_text("0\n1\n")
    with pytest.raises(CrossforgetError, match="Labels_bird.txt has 2 rows but Imagelist.txt lists 5"):
        NusWide(root, num_concepts=2)
    (root / "Groundtruth" / "AllLabels" / "Labels_bird.txt").unlink()
    with pytest.raises(CrossforgetError, match="lacks Labels_bird.txt"):
        NusWide(root, num_concepts=2)
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("beach\ncat\nsky\n")
    (root / "ConceptsList" / "Concepts81.txt").write_text("animal\nsky\n")
    with pytest.raises(CrossforgetError, match="AllTags1k.txt line 1 has 4 values, expected 3"):
        NusWide(root, num_concepts=2)
    with pytest.raises(CrossforgetError, match="num_concepts=21 but .* has 2 concept label files"):
        NusWide(root)
    (root / "NUS_WID_Tags" / "AllTags1k.txt").unlink()
    with pytest.raises(CrossforgetError, match=r"lacks NUS_WID_Tags/AllTags1k\.txt; expected ROOT/ImageList"):
        NusWide(root)
