"""ImageFolder trees: train/test folders, a seeded split, skipped files, bad roots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.single_label.imagefolder import describe_skipped, load_imagefolder
from tests.data.single_label.conftest import write_image


def _tree(root: Path) -> None:
    for i in range(3):
        write_image(root / "train" / "apple" / f"{i}.png", 10 * i)
        write_image(root / "test" / "apple" / f"t{i}.png", 5 * i)
    for i in range(2):
        write_image(root / "train" / "pear" / f"{i}.jpg", 100 + i)
    write_image(root / "test" / "pear" / "t.png", 7)
    (root / "train" / "apple" / "broken.jpg").write_bytes(b"not an image at all")
    (root / "train" / "pear" / "notes.txt").write_text("hello")
    (root / "train" / "plum").mkdir()
    write_image(root / "test" / "plum" / "t.png", 9)
    write_image(root / "test" / "kiwi" / "t.png", 9)


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
            write_image(tmp_path / cls / f"{i}.png", i)
    with pytest.raises(CrossforgetError, match="--test-fraction"):
        load_imagefolder(tmp_path)
    data = load_imagefolder(tmp_path, test_fraction=0.4, split_seed=2)
    assert np.bincount(data.targets[data.test]).tolist() == [2, 2]
    assert "seeded stratified split" in data.info["split"]
    assert describe_skipped(data.info["skipped"]) is None
    before = data.info["fingerprint"]
    write_image(tmp_path / "a" / "5.png", 9)
    assert load_imagefolder(tmp_path, test_fraction=0.4, split_seed=2).info["fingerprint"] != before


def test_imagefolder_bad_roots(tmp_path):
    with pytest.raises(CrossforgetError, match="does not exist"):
        load_imagefolder(tmp_path / "nope")
    (tmp_path / "only").mkdir()
    write_image(tmp_path / "only" / "x" / "0.png", 1)
    (tmp_path / "only" / "y").mkdir()
    with pytest.raises(CrossforgetError, match="fewer than two classes"):
        load_imagefolder(tmp_path / "only", test_fraction=0.5)
