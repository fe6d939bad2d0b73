"""DeepFashion categories: large categories kept and sampled, bad annotation files refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.single_label.deepfashion import load_deepfashion
from tests.data.single_label.conftest import write_image


def _deepfashion(root: Path, counts: dict[str, int], declared_extra: int = 0) -> None:
    (root / "Anno").mkdir(parents=True)
    cloth = [f"{len(counts)}", "category_name  category_type"] + [f"{n}   1" for n in counts]
    (root / "Anno" / "list_category_cloth.txt").write_text("\n".join(cloth) + "\n")
    lines = []
    for cls, (name, count) in enumerate(counts.items(), start=1):
        for i in range(count):
            rel = f"img/{name}_item/img_{i:04d}.jpg"
            write_image(root / rel, cls)
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
