"""ImageFolder-style single-label data: one folder per class, the folder name is the class name.

Layouts: ``root/train/<class>/*`` with ``root/test/<class>/*`` (or ``val``, ``valid``,
``validation``); or ``root/<class>/*`` alone. Without a test folder a split must be asked for
explicitly (``test_fraction``): a seeded split that keeps each class's share. Empty class folders,
files that are not images and images Pillow cannot open are skipped, counted and listed in
``info["skipped"]``, never silently used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import FileImages, SingleLabelData
from crossforget.data.images import unreadable_images
from crossforget.data.registry import register_dataset
from crossforget.data.splits import stratified_split

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
TEST_FOLDERS = ("test", "val", "valid", "validation")
_EXAMPLES = 5


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """Sub-folder name -> its image files (sorted; hidden entries ignored), for every sub-folder."""
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[sub.name] = sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith("."))
    return out


def _images_only(files: list[Path], skipped: dict) -> list[Path]:
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    others = [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    skipped["not_images"] += len(others)
    return images


def fingerprint(paths: Sequence[Path], targets: Sequence[int], split: Sequence[int]) -> str:
    """Changes when a file, its size, its modification time, its class or its split changes."""
    digest = hashlib.sha256()
    for path, target, part in zip(paths, targets, split, strict=True):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{target}|{part}\n".encode())
    return digest.hexdigest()[:16]


def _readable_files(
    class_names: list[str], train: dict[str, list[Path]], test: dict[str, list[Path]] | None, skipped: dict
) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, class indices, 0 train / 1 test) of the files Pillow can open; the rest is counted."""
    paths, targets, part = [], [], []
    for split_id, groups in ((0, train), (1, test or {})):
        for cls, name_ in enumerate(class_names):
            files = groups.get(name_, [])
            paths += files
            targets += [cls] * len(files)
            part += [split_id] * len(files)
    bad = set(unreadable_images(paths))
    if bad:
        skipped["unreadable"] += len(bad)
        skipped["unreadable_examples"] += [str(paths[i]) for i in sorted(bad)[:_EXAMPLES]]
    keep = [i for i in range(len(paths)) if i not in bad]
    return (
        [paths[i] for i in keep],
        np.array([targets[i] for i in keep], np.int64),
        np.array([part[i] for i in keep], np.int64),
    )


def _without_empty_classes(
    name: str, class_names: list[str], paths: list[Path], targets: np.ndarray, part: np.ndarray, skipped: dict
) -> tuple[list[Path], np.ndarray, np.ndarray, list[str]]:
    """Drop classes without a readable training image (and their test images); renumber the rest."""
    train_counts = np.bincount(targets[part == 0], minlength=len(class_names))
    empty = [class_names[c] for c in range(len(class_names)) if train_counts[c] == 0]
    if empty:
        skipped["empty_classes"] += empty
    kept_classes = [c for c in range(len(class_names)) if train_counts[c] > 0]
    if len(kept_classes) < 2:
        raise CrossforgetError(
            f"{name}: fewer than two classes have readable training images "
            f"(skipped: {_describe(skipped)}); check the folder"
        )
    remap = np.full(len(class_names), -1, np.int64)
    remap[kept_classes] = np.arange(len(kept_classes))
    rows = remap[targets] >= 0
    paths = [p for p, r in zip(paths, rows, strict=True) if r]
    return paths, remap[targets[rows]], part[rows], [class_names[c] for c in kept_classes]


def _train_test(
    name: str,
    targets: np.ndarray,
    part: np.ndarray,
    on_disk: bool,
    test_fraction: float | None,
    split_seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(train indices, test indices, 0/1 part, the split rule): the test folder, else a seeded split."""
    if not on_disk:
        if test_fraction is None:
            raise CrossforgetError(
                f"{name}: no test split found (looked for {', '.join(TEST_FOLDERS)} folders); "
                "add one, or pass --test-fraction 0.2 for a seeded split of the images"
            )
        train_idx, test_idx = stratified_split(targets, test_fraction, split_seed)
        part = np.zeros(len(targets), np.int64)
        part[test_idx] = 1
        rule = f"seeded stratified split, test fraction {test_fraction}, seed {split_seed}"
        return train_idx, test_idx, part, rule
    train_idx, test_idx = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
    if test_idx.size == 0:
        raise CrossforgetError(f"{name}: the test folder holds no readable image of a training class")
    return train_idx, test_idx, part, "test folder on disk"


def build_single_label(
    name: str,
    class_names: list[str],
    train: dict[str, list[Path]],
    test: dict[str, list[Path]] | None,
    test_fraction: float | None,
    split_seed: int,
    skipped: dict,
    extra_info: dict | None = None,
    aliases: dict[str, str] | None = None,
) -> SingleLabelData:
    """Assemble a dataset from per-class file lists; drops unreadable files and classes left empty.

    ``test`` None means "no test split on disk": ``test_fraction`` then gives a seeded stratified split.
    """
    paths, targets, part = _readable_files(class_names, train, test, skipped)
    paths, targets, part, names = _without_empty_classes(name, class_names, paths, targets, part, skipped)
    train_idx, test_idx, part, split_rule = _train_test(
        name, targets, part, test is not None, test_fraction, split_seed
    )
    info = {
        "source": name,
        "split": split_rule,
        "skipped": skipped,
        "fingerprint": fingerprint(paths, targets.tolist(), part.tolist()),
        **(extra_info or {}),
    }
    valid_aliases = {k: v for k, v in (aliases or {}).items() if v in names}
    return SingleLabelData(
        name, names, targets, FileImages(list(paths)), train_idx, test_idx, info, valid_aliases
    )


def _describe(skipped: dict) -> str:
    return (
        f"{len(skipped['empty_classes'])} empty classes, {skipped['unreadable']} unreadable images, "
        f"{skipped['missing_files']} missing files, {skipped['not_images']} other files, "
        f"{skipped['unknown_test_classes']} test folders without a training class"
    )


def new_skipped() -> dict:
    """Counters of what a loader left out (reported in results and on the console)."""
    return {
        "empty_classes": [],
        "unreadable": 0,
        "unreadable_examples": [],
        "missing_files": 0,
        "missing_examples": [],
        "not_images": 0,
        "unknown_test_classes": 0,
    }


def describe_skipped(skipped: dict) -> str | None:
    """One line about what was left out, or None when nothing was."""
    counts = ("empty_classes", "unreadable", "missing_files", "not_images", "unknown_test_classes")
    if not any(skipped.get(k) for k in counts):
        return None
    text = _describe(skipped)
    if skipped["empty_classes"]:
        text += f" (empty: {', '.join(skipped['empty_classes'][:_EXAMPLES])})"
    for key in ("unreadable_examples", "missing_examples"):
        if skipped[key]:
            text += f" ({key.split('_')[0]} e.g. {skipped[key][0]})"
    return text


@register_dataset("imagefolder", "single", about="one folder per class")
def load_imagefolder(
    root: str | Path, test_fraction: float | None = None, split_seed: int = 0
) -> SingleLabelData:
    """Load an ImageFolder tree (see the module docstring for the layouts)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CrossforgetError(
            f"image folder {root} does not exist; pass --root DIR with one folder per class"
        )
    skipped = new_skipped()
    test_root = next((root / t for t in TEST_FOLDERS if (root / t).is_dir()), None)
    if (root / "train").is_dir():
        train_root = root / "train"
    else:
        train_root, test_root = root, None
    train = {k: _images_only(v, skipped) for k, v in class_folders(train_root).items()}
    if not train:
        raise CrossforgetError(
            f"{train_root} has no class folders; expected {train_root}/<class name>/<images>"
        )
    test = None
    if test_root is not None:
        test = {k: _images_only(v, skipped) for k, v in class_folders(test_root).items()}
        unknown = [k for k in test if k not in train]
        skipped["unknown_test_classes"] = len(unknown)
        test = {k: v for k, v in test.items() if k in train}
    return build_single_label(
        "imagefolder", sorted(train), train, test, test_fraction, split_seed, skipped, {"root": str(root)}
    )
