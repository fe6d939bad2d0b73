"""Single-label data: scenes-single, ImageFolder trees, ImageNet-100 sampling and DeepFashion categories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.scenes.vocabulary import CLASS_NAMES
from crossforget.data.single_label.dataset import (
    SingleLabelData,
    generate_scenes_single,
    load_single_label,
    stratified_split,
)
from crossforget.data.single_label.deepfashion import load_deepfashion
from crossforget.data.single_label.imagefolder import describe_skipped, load_imagefolder
from crossforget.data.single_label.imagenet100 import load_imagenet100


def _image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


# --- scenes-single ----------------------------------------------------------------------------------


def test_scenes_single_is_seeded_balanced_and_split():
    data = generate_scenes_single(num_train=132, num_test=66, image_size=32, seed=3)
    again = generate_scenes_single(num_train=132, num_test=66, image_size=32, seed=3)
    other = generate_scenes_single(num_train=132, num_test=66, image_size=32, seed=4)
    pixels = data.images.load(range(len(data)), 32)
    assert np.array_equal(pixels, again.images.load(range(len(data)), 32))
    assert not np.array_equal(pixels, other.images.load(range(len(data)), 32))
    assert data.class_names == list(CLASS_NAMES) and data.num_classes == 66
    assert np.bincount(data.targets[data.train]).tolist() == [2] * 66
    assert np.bincount(data.targets[data.test]).tolist() == [1] * 66
    assert np.intersect1d(data.train, data.test).size == 0
    # a train image does not depend on how many test images there are
    fewer = generate_scenes_single(num_train=132, num_test=5, image_size=32, seed=3)
    assert np.array_equal(fewer.images.load(range(132), 32), pixels[:132])
    assert data.info["fingerprint"] != other.info["fingerprint"]


def test_scenes_single_subset_keeps_the_included_class():
    data = generate_scenes_single(num_train=20, num_test=10, num_classes=5, include=["dog"])
    assert len(data.class_names) == 5 and "dog" in data.class_names
    assert data.class_names[:4] == list(CLASS_NAMES[:4])
    with pytest.raises(CrossforgetError, match="valid classes"):
        generate_scenes_single(num_train=20, num_test=10, num_classes=5, include=["unicorn"])
    with pytest.raises(CrossforgetError, match="image_size"):
        generate_scenes_single(num_train=20, num_test=10, image_size=40)
    with pytest.raises(CrossforgetError, match="num_train"):
        generate_scenes_single(num_train=0)


def test_load_by_name_checks_options():
    with pytest.raises(CrossforgetError, match="valid: "):
        load_single_label("scenes-single", num_items=5)
    with pytest.raises(CrossforgetError, match="choose one of"):
        load_single_label("cifar")


# --- the container ----------------------------------------------------------------------------------


def _container() -> SingleLabelData:
    return SingleLabelData(
        "toy",
        ["cat", "dog", "fox"],
        np.array([0, 1, 0, 2, 1, 0]),
        _Images(6),
        train=np.array([0, 1, 2, 4]),
        test=np.array([3, 5]),
        aliases={"puppy": "dog"},
    )


class _Images:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load(self, indices, size):
        return np.zeros((len(indices), size, size, 3), np.uint8)


def test_class_lookup_and_forget_checks():
    data = _container()
    assert data.class_index("DOG") == 1 and data.class_index("puppy") == 1
    with pytest.raises(CrossforgetError, match="valid classes: cat, dog, fox"):
        data.class_index("wolf")
    assert data.class_indices(["dog", "puppy"]) == [1]
    with pytest.raises(CrossforgetError, match="no training image of fox"):
        data.class_indices(["fox"])
    with pytest.raises(CrossforgetError, match="every class"):
        data.class_indices(["cat", "dog", "fox"])
    assert data.one_hot().tolist()[3] == [0, 0, 1]
    with pytest.raises(CrossforgetError, match="overlap"):
        SingleLabelData(
            "toy", ["a", "b"], np.array([0, 1]), _Images(2), train=np.array([0, 1]), test=np.array([1])
        )


def test_stratified_split_by_hand():
    targets = np.array([0] * 10 + [1] * 5 + [2])
    train, test = stratified_split(targets, 0.2, seed=1)
    assert np.bincount(targets[test], minlength=3).tolist() == [2, 1, 0]  # the singleton stays in training
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(16))
    assert np.array_equal(stratified_split(targets, 0.2, seed=1)[1], test)
    with pytest.raises(CrossforgetError, match="between 0 and 1"):
        stratified_split(targets, 1.0, seed=1)


# --- ImageFolder ------------------------------------------------------------------------------------


def _tree(root: Path) -> None:
    for i in range(3):
        _image(root / "train" / "apple" / f"{i}.png", 10 * i)
        _image(root / "test" / "apple" / f"t{i}.png", 5 * i)
    for i in range(2):
        _image(root / "train" / "pear" / f"{i}.jpg", 100 + i)
    _image(root / "test" / "pear" / "t.png", 7)
    (root / "train" / "apple" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "train" / "pear" / "notes.txt").write_text("hello")
    (root / "train" / "plum").mkdir()
    _image(root / "test" / "plum" / "t.png", 9)
    _image(root / "test" / "kiwi" / "t.png", 9)


def test_imagefolder_with_a_test_folder_reports_what_it_skipped(tmp_path):
    _tree(tmp_path)
    data = load_imagefolder(tmp_path)
    assert data.class_names == ["apple", "pear"]
    assert (data.train.size, data.test.size) == (5, 4)
    skipped = data.info["skipped"]
    assert skipped["empty_classes"] == ["plum"]
    assert skipped["unreadable"] == 1 and "broken.jpg" in skipped["unreadable_examples"][0]
    assert (skipped["not_images"], skipped["unknown_test_classes"]) == (1, 1)
    note = describe_skipped(skipped)
    assert "1 empty classes" in note and "1 unreadable" in note and "plum" in note
    assert data.images.load([int(data.train[0])], 4).shape == (1, 4, 4, 3)
    assert data.info["split"] == "test folder on disk"


def test_imagefolder_without_a_test_split(tmp_path):
    for cls in ("a", "b"):
        for i in range(5):
            _image(tmp_path / cls / f"{i}.png", i)
    with pytest.raises(CrossforgetError, match="--test-fraction"):
        load_imagefolder(tmp_path)
    data = load_imagefolder(tmp_path, test_fraction=0.4, split_seed=2)
    assert np.bincount(data.targets[data.test]).tolist() == [2, 2]
    assert "seeded stratified split" in data.info["split"]
    assert describe_skipped(data.info["skipped"]) is None
    before = data.info["fingerprint"]
    _image(tmp_path / "a" / "5.png", 9)
    assert load_imagefolder(tmp_path, test_fraction=0.4, split_seed=2).info["fingerprint"] != before


def test_imagefolder_bad_roots(tmp_path):
    with pytest.raises(CrossforgetError, match="does not exist"):
        load_imagefolder(tmp_path / "nope")
    (tmp_path / "only").mkdir()
    _image(tmp_path / "only" / "x" / "0.png", 1)
    (tmp_path / "only" / "y").mkdir()
    with pytest.raises(CrossforgetError, match="fewer than two classes"):
        load_imagefolder(tmp_path / "only", test_fraction=0.5)


# --- ImageNet-100 -----------------------------------------------------------------------------------

SYNSETS = {
    "n02107142": "Doberman, Doberman pinscher",
    "n01440764": "tench, Tinca tinca",
    "n02012849": "crane",
    "n03126707": "crane",
    "n04000001": "thing",
}


def _imagenet(root: Path, val: bool) -> None:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{k} {v}\n" for k, v in SYNSETS.items()))
    for n, wnid in enumerate(SYNSETS):
        for i in range(6):
            _image(root / "train" / wnid / f"{wnid}_{i}.JPEG", n * 10 + i)
        if val:
            for i in range(2):
                _image(root / "val" / wnid / f"v{i}.JPEG", n)


def test_imagenet100_samples_classes_and_images_with_names(tmp_path):
    _imagenet(tmp_path, val=True)
    data = load_imagenet100(tmp_path, num_classes=3, images_per_class=4, seed=1, include=["Doberman"])
    assert "Doberman" in data.class_names and data.num_classes == 3
    assert (
        data.class_index("doberman pinscher")
        == data.class_index("n02107142")
        == data.class_names.index("Doberman")
    )
    assert np.bincount(data.targets[data.train]).tolist() == [4, 4, 4]
    assert np.bincount(data.targets[data.test]).tolist() == [2, 2, 2]  # the val folders
    again = load_imagenet100(tmp_path, num_classes=3, images_per_class=4, seed=1, include=["Doberman"])
    assert again.info["wnids"] == data.info["wnids"]
    everything = load_imagenet100(tmp_path, num_classes=5, images_per_class=4)
    assert "crane (n02012849)" in everything.class_names and "crane (n03126707)" in everything.class_names
    with pytest.raises(CrossforgetError, match="matches no class"):
        load_imagenet100(tmp_path, num_classes=3, include=["unicorn"])
    with pytest.raises(CrossforgetError, match="ambiguous"):
        load_imagenet100(tmp_path, num_classes=3, include=["crane"])


def test_imagenet100_without_val_uses_a_seeded_split(tmp_path):
    _imagenet(tmp_path, val=False)
    data = load_imagenet100(tmp_path, num_classes=2, images_per_class=5, test_fraction=0.4)
    assert np.bincount(data.targets[data.test]).tolist() == [2, 2]
    assert np.bincount(data.targets[data.train]).tolist() == [3, 3]
    with pytest.raises(CrossforgetError, match="train is missing"):
        load_imagenet100(tmp_path / "train")


# --- DeepFashion ------------------------------------------------------------------------------------


def _deepfashion(root: Path, counts: dict[str, int], declared_extra: int = 0) -> None:
    (root / "Anno").mkdir(parents=True)
    cloth = [f"{len(counts)}", "category_name  category_type"] + [f"{n}   1" for n in counts]
    (root / "Anno" / "list_category_cloth.txt").write_text("\n".join(cloth) + "\n")
    lines = []
    for cls, (name, count) in enumerate(counts.items(), start=1):
        for i in range(count):
            rel = f"img/{name}_item/img_{i:04d}.jpg"
            _image(root / rel, cls)
            lines.append(f"{rel}    {cls}")
    header = [f"{len(lines) + declared_extra}", "image_name  category_label"]
    (root / "Anno" / "list_category_img.txt").write_text("\n".join(header + lines) + "\n")


def test_deepfashion_keeps_large_categories_and_samples_them(tmp_path):
    _deepfashion(tmp_path, {"Tee": 12, "Dress": 11, "Trunks": 3, "Shorts": 20, "Cape": 10})
    (tmp_path / "img" / "Shorts_item" / "img_0000.jpg").unlink()  # listed but missing on disk
    data = load_deepfashion(tmp_path, min_images=10, per_class=5, seed=0, test_fraction=0.2)
    assert data.class_names == ["Tee", "Dress", "Shorts"]  # more than 10 images; Cape has exactly 10
    total = np.bincount(data.targets, minlength=3)
    assert total[:2].tolist() == [5, 5] and total[2] in (4, 5)
    assert data.info["skipped"]["missing_files"] == 5 - total[2]
    kept = load_deepfashion(tmp_path, min_images=10, per_class=5, include=["trunks"])
    assert "Trunks" in kept.class_names and kept.info["sampling"]["included_below_threshold"] == ["Trunks"]
    with pytest.raises(CrossforgetError, match="valid categories"):
        load_deepfashion(tmp_path, include=["Spacesuit"])


def test_deepfashion_bad_annotations(tmp_path):
    with pytest.raises(CrossforgetError, match="Anno/list_category_cloth.txt is missing"):
        load_deepfashion(tmp_path)
    _deepfashion(tmp_path / "t", {"Tee": 3, "Dress": 3}, declared_extra=2)
    with pytest.raises(CrossforgetError, match="truncated"):
        load_deepfashion(tmp_path / "t")
