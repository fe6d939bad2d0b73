"""COCO loader: the real 159-image slice (when present) and small synthetic trees for the edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.multilabel.coco import (
    CocoDataset,
    _parse_instances,
    _scan_instances,
    load_coco,
    read_instances,
)

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
COCO_MINI = SHARED / "coco-mini"


@pytest.fixture(scope="module")
def mini() -> CocoDataset:
    if not COCO_MINI.is_dir():
        pytest.skip(f"shared test data not found at {COCO_MINI}")
    return CocoDataset(COCO_MINI)


def _reference(
    root: Path, splits: tuple[str, ...]
) -> tuple[list[str], np.ndarray, list[list[str]], list[str]]:
    """Labels and captions derived straight from the JSON, written independently of the loader."""
    names, rows, captions, files = [], [], [], []
    for split in splits:
        instances = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        caps = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
        categories = sorted(instances["categories"], key=lambda c: c["id"])
        names = [c["name"] for c in categories]
        column = {c["id"]: j for j, c in enumerate(categories)}
        per_image: dict[int, set[int]] = {}
        for ann in instances["annotations"]:
            per_image.setdefault(ann["image_id"], set()).add(column[ann["category_id"]])
        by_id = {img["id"]: img["file_name"] for img in instances["images"]}
        for image_id in sorted(per_image):
            row = np.zeros(len(categories), dtype=np.uint8)
            row[sorted(per_image[image_id])] = 1
            rows.append(row)
            mine = sorted((a["id"], a["caption"]) for a in caps["annotations"] if a["image_id"] == image_id)
            captions.append([c.strip() for _, c in mine])
            files.append(f"{split}/{by_id[image_id]}")
    return names, np.stack(rows), captions, files


def test_mini_labels_match_the_instance_annotations(mini: CocoDataset) -> None:
    names, labels, captions, files = _reference(COCO_MINI, ("train2017", "val2017"))
    assert mini.class_names == names
    np.testing.assert_array_equal(mini.labels, labels)
    assert mini.labels.dtype == np.uint8 and mini.labels.shape == (159, 80)
    assert mini.captions == captions
    assert [f"{p.parent.name}/{p.name}" for p in mini.image_files] == files


def test_mini_counts(mini: CocoDataset) -> None:
    assert len(mini) == 159
    assert mini.info["splits"]["train2017"]["kept"] == 80
    assert mini.info["splits"]["val2017"]["kept"] == 79
    assert mini.info["splits"]["val2017"]["unlisted_on_disk"] == 80
    assert mini.skipped == 80 and mini.info["skipped"] == 80
    assert all(len(c) == 5 for c in mini.captions)


def test_mini_classes_in_category_id_order(mini: CocoDataset) -> None:
    assert len(mini.class_names) == 80
    assert mini.class_names[:3] == ["person", "bicycle", "car"]
    assert mini.class_names[-1] == "toothbrush"
    assert mini.supercategories[:3] == ["person", "vehicle", "vehicle"]
    assert mini.labels.sum(axis=0).min() >= 1  # every category occurs in the slice


def test_mini_images_decode(mini: CocoDataset) -> None:
    data = mini.to_multimodal()
    assert data.name == "coco" and len(data) == 159 and data.supercategories == mini.supercategories
    batch = data.require_images().load([0, 80, 158], 32)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.uint8
    assert not data.images.failed
    assert batch.std() > 10  # real photographs, not the grey stand-in


def test_fast_scan_equals_full_parse() -> None:
    if not COCO_MINI.is_dir():
        pytest.skip(f"shared test data not found at {COCO_MINI}")
    for split in ("train2017", "val2017"):
        raw = (COCO_MINI / "annotations" / f"instances_{split}.json").read_bytes()
        fast = _scan_instances(raw.decode())
        full = _parse_instances(raw, Path(split))
        assert fast is not None
        np.testing.assert_array_equal(fast.pairs, full.pairs)
        assert fast.images == full.images and fast.categories == full.categories


# ----- synthetic trees -------------------------------------------------------------------------------------

CATEGORIES = [
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 30, 3), value, dtype=np.uint8)).save(path)


def _write_split(root: Path, split: str, images: dict[int, str], annotations: list, captions: list) -> None:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    listed = [{"id": i, "file_name": name, "width": 30, "height": 20} for i, name in images.items()]
    instances = {"info": {}, "images": listed, "annotations": annotations, "categories": CATEGORIES}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(instances))
    caps = {"images": listed, "annotations": captions}
    (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(caps))


def _ann(ann_id: int, image_id: int, category_id: int) -> dict:
    return {"segmentation": [[1.0, 2.0, 3.0, 4.0]], "area": 2.0, "iscrowd": 0, "image_id": image_id,
            "bbox": [0, 0, 1, 1], "category_id": category_id, "id": ann_id}  # fmt: skip


def _cap(ann_id: int, image_id: int, text: str) -> dict:
    return {"image_id": image_id, "id": ann_id, "caption": text}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """train: 4 listed images (1 without instances, 1 missing on disk, 1 undecodable), 1 unlisted file."""
    root = tmp_path / "coco"
    for image_id, value in ((10, 50), (11, 100), (12, 150)):
        _image(root / "train2017" / f"{image_id:012d}.jpg", value)
    _image(root / "train2017" / "000000000099.jpg", 7)  # on disk, listed nowhere
    (root / "train2017" / f"{13:012d}.jpg").write_bytes(b"this is not a jpeg")
    images = {i: f"{i:012d}.jpg" for i in (10, 11, 12, 13, 14)}  # 14 is missing on disk
    annotations = [_ann(5, 10, 18), _ann(2, 10, 1), _ann(3, 11, 3), _ann(4, 13, 1), _ann(6, 14, 1)]
    captions = [_cap(9, 10, "b second"), _cap(1, 10, " a first "), _cap(3, 11, "car"), _cap(4, 12, "empty"),
                _cap(5, 13, "x"), _cap(6, 14, "y")]  # fmt: skip
    _write_split(root, "train2017", images, annotations, captions)
    return root


def test_synthetic_tree_counts_every_reason(tree: Path) -> None:
    data = CocoDataset(tree, splits=("train2017",))
    assert data.class_names == ["person", "car", "dog"]  # id order 1, 3, 18
    assert data.supercategories == ["person", "vehicle", "animal"]
    assert data.image_ids == [10, 11]
    np.testing.assert_array_equal(data.labels, [[1, 0, 1], [0, 1, 0]])
    assert data.captions == [["a first", "b second"], ["car"]]
    stats = data.info["splits"]["train2017"]
    assert stats == {"listed": 5, "kept": 2, "no_instances": 1, "no_captions": 0, "missing_on_disk": 1,
                     "unlisted_on_disk": 1, "unreadable": 1}  # fmt: skip
    assert data.skipped == 4


def test_undecodable_images_do_not_crash_when_not_checked(tree: Path) -> None:
    data = load_coco(tree, splits=["train2017"], check_images=False)
    assert len(data) == 3  # the undecodable file stays in
    batch = data.images.load([0, 1, 2], 16)
    assert data.images.failed == {2}
    assert (batch[2] == 127).all() and batch[0, 0, 0, 0] != 127


def test_fast_scan_handles_any_key_order_and_declines_irregular_files(tree: Path) -> None:
    path = tree / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    data["annotations"] = [
        dict(reversed(list(a.items()))) if k % 2 else a for k, a in enumerate(data["annotations"])
    ]
    text = json.dumps(data)
    scanned = _scan_instances(text)
    assert scanned is not None
    np.testing.assert_array_equal(scanned.pairs, [[10, 18], [10, 1], [11, 3], [13, 1], [14, 1]])
    del data["annotations"][0]["category_id"]
    assert _scan_instances(json.dumps(data)) is None
    path.write_text(json.dumps(data))
    with pytest.raises(CrossforgetError, match="not a COCO instances file"):
        read_instances(path)


def test_missing_annotation_file_names_the_layout(tree: Path) -> None:
    with pytest.raises(
        CrossforgetError, match=r"lacks val2017, annotations/captions_val2017\.json.*expected"
    ):
        CocoDataset(tree)
    (tree / "annotations" / "captions_train2017.json").unlink()
    with pytest.raises(CrossforgetError, match=r"lacks annotations/captions_train2017\.json;"):
        CocoDataset(tree, splits=("train2017",))
    with pytest.raises(CrossforgetError, match="not a folder"):
        CocoDataset(tree / "nowhere")


def test_splits_with_different_categories_are_refused(tree: Path) -> None:
    _image(tree / "val2017" / "000000000020.jpg", 30)
    _write_split(tree, "val2017", {20: "000000000020.jpg"}, [_ann(1, 20, 1)], [_cap(1, 20, "p")])
    assert len(CocoDataset(tree)) == 3
    instances = json.loads((tree / "annotations" / "instances_val2017.json").read_text())
    instances["categories"] = instances["categories"][:2]
    (tree / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    with pytest.raises(CrossforgetError, match="other categories"):
        CocoDataset(tree)


def test_unknown_category_id_is_an_error(tree: Path) -> None:
    path = tree / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    data["annotations"].append(_ann(77, 11, 42))
    path.write_text(json.dumps(data))
    with pytest.raises(CrossforgetError, match=r"category id\(s\) \[42\]"):
        CocoDataset(tree, splits=("train2017",))
