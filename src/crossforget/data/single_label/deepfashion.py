"""DeepFashion (Category and Attribute Prediction benchmark) as a single-label category dataset.

Reads ``Anno/list_category_cloth.txt`` (category names) and ``Anno/list_category_img.txt`` (image
path and 1-based category per line; both files start with a count line and a header line; the
``Anno_coarse`` folder of newer releases works too). As in the paper, the categories with more than
``min_images`` (1,000) images are kept and ``per_class`` (1,000) images are sampled from each, with a
seed; categories named in ``include`` (e.g. the forget class) are kept even below the threshold, which
``info["sampling"]["included_below_threshold"]`` records. The sample is split into train and test by
a seeded stratified split (``test_fraction``, default 0.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import SingleLabelData
from crossforget.data.names import name_indices
from crossforget.data.registry import register_dataset
from crossforget.data.single_label.imagefolder import build_single_label, new_skipped

ANNOTATION_FOLDERS = ("Anno", "Anno_coarse")
CLOTH_FILE, IMAGE_FILE = "list_category_cloth.txt", "list_category_img.txt"


def _annotation(root: Path, name: str) -> Path:
    for folder in ANNOTATION_FOLDERS:
        if (root / folder / name).is_file():
            return root / folder / name
    raise CrossforgetError(
        f"{root}/Anno/{name} is missing; point --root at the DeepFashion Category and "
        "Attribute Prediction folder (with Anno/ and img/)"
    )


def _rows(path: Path) -> list[list[str]]:
    """The data lines of a DeepFashion list file (after the count and header lines), split on whitespace."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise CrossforgetError(
            f"{path} does not start with a count line and a header line; is it a DeepFashion list?"
        )
    rows = [line.split() for line in lines[2:]]
    if int(lines[0]) != len(rows):
        raise CrossforgetError(
            f"{path} declares {int(lines[0])} entries but holds {len(rows)}; the file is truncated"
        )
    return rows


def read_categories(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Category names (index 0 = category 1) and (relative image path, 0-based category) pairs."""
    cloth_path, image_path = _annotation(root, CLOTH_FILE), _annotation(root, IMAGE_FILE)
    names = [" ".join(row[:-1]) for row in _rows(cloth_path)]
    images = []
    for number, row in enumerate(_rows(image_path), start=3):
        if len(row) != 2 or not row[1].isdigit() or not 1 <= int(row[1]) <= len(names):
            raise CrossforgetError(
                f"{image_path}:{number}: expected '<image path> <category 1..{len(names)}>'"
            )
        images.append((row[0], int(row[1]) - 1))
    return names, images


@register_dataset("deepfashion", "single")
def load_deepfashion(
    root: str | Path,
    min_images: int = 1000,
    per_class: int = 1000,
    seed: int = 0,
    include: Sequence[str] = (),
    test_fraction: float = 0.2,
) -> SingleLabelData:
    """Keep categories with more than ``min_images`` images, sample ``per_class`` of each (seeded)."""
    root = Path(root).expanduser()
    names, images = read_categories(root)
    by_class: dict[int, list[str]] = {}
    for path, cls in images:
        by_class.setdefault(cls, []).append(path)
    included = name_indices(include, names, "DeepFashion", "category", "categories")
    kept = sorted({c for c, paths in by_class.items() if len(paths) > min_images} | set(included))
    below = [names[c] for c in included if len(by_class.get(c, [])) <= min_images]
    rng = np.random.default_rng(seed)
    skipped = new_skipped()
    missing: list[str] = []
    train: dict[str, list[Path]] = {}
    for cls in kept:
        paths = by_class.get(cls, [])
        picks = np.sort(rng.choice(len(paths), min(per_class, len(paths)), replace=False)) if paths else []
        files = [root / paths[i] for i in picks]
        missing += [str(f) for f in files if not f.is_file()]
        train[names[cls]] = [f for f in files if f.is_file()]
    skipped["missing_files"] = len(missing)
    skipped["missing_examples"] = missing[:5]
    if missing and not any(train.values()):
        raise CrossforgetError(
            f"none of the listed images exist under {root} (e.g. {missing[0]}); "
            "is --root the folder that holds img/?"
        )
    info = {
        "root": str(root),
        "sampling": {
            "min_images": min_images,
            "per_class": per_class,
            "seed": seed,
            "categories": len(kept),
            "included_below_threshold": below,
        },
    }
    return build_single_label(
        "deepfashion", [names[c] for c in kept], train, None, test_fraction, seed, skipped, info
    )
