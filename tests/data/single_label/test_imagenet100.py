"""ImageNet-100: sampled classes and images, WordNet names, a seeded split without val."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.single_label.imagenet100 import load_imagenet100
from tests.data.single_label.conftest import write_image

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
            write_image(root / "train" / wnid / f"{wnid}_{i}.JPEG", n * 10 + i)
        if val:
            for i in range(2):
                write_image(root / "val" / wnid / f"v{i}.JPEG", n)


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
