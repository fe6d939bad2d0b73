"""Bring-your-own data: a folder of images described by ``pairs.jsonl`` (and an optional ``classes.txt``).

Each non-blank line of ``pairs.jsonl`` is one item::

    {"image": "relative/path.jpg", "captions": ["...", "..."], "labels": ["dog", "person"]}

``"caption": "..."`` may replace ``"captions"``. The class order comes from ``classes.txt`` (one name per
line) when present, else from the sorted label names, so the same files always give the same columns.
Mistakes are reported with their line numbers, all at once, so a user fixes the file in one pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import FileImages, MultiModalData
from crossforget.data.images import unreadable_images
from crossforget.data.registry import register_dataset, require_root

PAIRS_FILE = "pairs.jsonl"
CLASSES_FILE = "classes.txt"
_SHOW = 5


def _first(items: Sequence[str]) -> str:
    more = f" (and {len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return "; ".join(items[:_SHOW]) + more


def _read_classes(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CrossforgetError(f"{path} is not UTF-8 text (line {line}); save it as UTF-8") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CrossforgetError(f"{path} lists class(es) {duplicates} more than once; keep one line per class")
    if not names:
        raise CrossforgetError(f"{path} is empty; write one class name per line or delete the file")
    return names


def _as_strings(value: object) -> list[str] | None:
    """A string or a list of non-empty strings as a list; None when it is neither."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    return None


def _parse_line(text: str) -> tuple[str, list[str], list[str]]:
    """(image, captions, labels) of one line; ValueError with a user-facing reason otherwise."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError("must be a JSON object")
    image = record.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValueError('needs "image": "relative/path.jpg"')
    if ("captions" in record) == ("caption" in record):
        raise ValueError('needs exactly one of "captions": ["..."] or "caption": "..."')
    captions = _as_strings(record.get("captions", record.get("caption")))
    if captions is None:
        raise ValueError("captions must be a non-empty string or a non-empty list of non-empty strings")
    labels = _as_strings(record.get("labels"))
    if labels is None:
        raise ValueError('needs "labels": ["class", ...] with at least one class name')
    return image.strip(), captions, labels


def outside_root(image: str) -> bool:
    """Whether an image path is absolute or climbs out of the data root (``../x.jpg``).

    Judged on the text, not on resolved links, so a root that links to its image folders still works.
    """
    normal = os.path.normpath(image)
    return os.path.isabs(image) or normal == ".." or normal.startswith(".." + os.sep)


Item = tuple[int, str, list[str], list[str]]  # (line number, image path, captions, labels)


def _read_items(pairs_path: Path) -> list[Item]:
    """Every non-blank line of ``pairs.jsonl``; one error lists the first malformed lines."""
    items: list[Item] = []
    problems: list[str] = []
    with pairs_path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"line {number}: not UTF-8 text (save the file as UTF-8)")
                continue
            if not line.strip():
                continue
            try:
                items.append((number, *_parse_line(line)))
            except ValueError as exc:
                problems.append(f"line {number}: {exc}")
    if problems:
        raise CrossforgetError(f"{pairs_path} has {len(problems)} malformed line(s): {_first(problems)}")
    return items


def _label_names(items: list[Item]) -> list[str]:
    """The class order without ``classes.txt``: the sorted label names."""
    return sorted({label for *_, labels in items for label in labels})


def _check_known(items: list[Item], class_names: list[str], pairs_path: Path, classes_path: Path) -> None:
    """Every label must be in ``classes.txt`` (a typo would otherwise become a class of its own)."""
    known = set(class_names)
    unknown = [f"line {n}: {sorted(set(ls) - known)}" for n, _, _, ls in items if not set(ls) <= known]
    if unknown:
        raise CrossforgetError(
            f"{pairs_path} uses labels missing from {classes_path}: {_first(unknown)}; "
            "add them to classes.txt or fix the spelling"
        )


def _check_inside(items: list[Item], root: Path, pairs_path: Path) -> None:
    """Image paths must stay inside ``root`` (a shared pairs.jsonl must not read arbitrary files)."""
    outside = [f"line {n}: {image}" for n, image, _, _ in items if outside_root(image)]
    if outside:
        raise CrossforgetError(
            f"{pairs_path} names {len(outside)} image(s) outside {root}: {_first(outside)}; use paths "
            "relative to the data folder, or pass --allow-outside-root if that is intended"
        )


def _label_matrix(item_labels: list[list[str]], class_names: list[str]) -> np.ndarray:
    """Multi-hot (items, classes) uint8 labels."""
    column = {name: j for j, name in enumerate(class_names)}
    labels = np.zeros((len(item_labels), len(class_names)), dtype=np.uint8)
    for row, names in enumerate(item_labels):
        labels[row, [column[name] for name in names]] = 1
    return labels


def load_jsonl_pairs(
    root: str | Path, check_images: bool = True, allow_outside_root: bool = False
) -> MultiModalData:
    """Read ``root/pairs.jsonl`` (+ optional ``root/classes.txt``) into a ``MultiModalData``.

    Malformed lines, unknown labels (with ``classes.txt``) and missing image files raise one error that
    lists the first few problems. Images Pillow cannot open are dropped and counted in ``info``. Image
    paths must stay inside ``root`` unless ``allow_outside_root`` (a shared pairs.jsonl must not make
    the loader read arbitrary files).
    """
    root = Path(root)
    pairs_path = root / PAIRS_FILE
    if not pairs_path.is_file():
        raise CrossforgetError(
            f"{pairs_path} not found; a jsonl dataset is a folder with {PAIRS_FILE} (one JSON object "
            'per line: {"image": "relative/path.jpg", "captions": [...], "labels": [...]}) and its images'
        )
    classes_path = root / CLASSES_FILE
    fixed_classes = _read_classes(classes_path) if classes_path.is_file() else None

    items = _read_items(pairs_path)
    if not allow_outside_root:
        _check_inside(items, root, pairs_path)
    if not items:
        raise CrossforgetError(f"{pairs_path} has no items; add one JSON object per line")

    if fixed_classes is None:
        class_names = _label_names(items)
    else:
        class_names = fixed_classes
        _check_known(items, class_names, pairs_path, classes_path)

    paths = [root / image for _, image, _, _ in items]
    missing = [f"line {items[i][0]}: {items[i][1]}" for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        raise CrossforgetError(
            f"{len(missing)} image file(s) named in {pairs_path} do not exist under {root}: {_first(missing)}"
        )

    unreadable = set(unreadable_images(paths)) if check_images else set()
    keep = [i for i in range(len(items)) if i not in unreadable]
    if not keep:
        raise CrossforgetError(f"none of the {len(items)} images named in {pairs_path} could be opened")
    return MultiModalData(
        name="jsonl",
        class_names=class_names,
        labels=_label_matrix([items[i][3] for i in keep], class_names),
        captions=[items[i][2] for i in keep],
        images=FileImages([paths[i] for i in keep]),
        info={
            "root": str(root),
            "items": len(keep),
            "skipped": {"unreadable_image": len(unreadable)},
            "unreadable_examples": [str(paths[i]) for i in sorted(unreadable)[:_SHOW]],
            "class_order": "classes.txt" if fixed_classes is not None else "sorted label names",
        },
    )


@register_dataset("jsonl", "multilabel", about="bring your own pairs.jsonl")
def jsonl_dataset(
    root: str | None = None, check_images: bool = True, allow_outside_root: bool = False
) -> MultiModalData:
    """The registry's ``jsonl``: :func:`load_jsonl_pairs` once ``--data-root`` is given."""
    return load_jsonl_pairs(
        require_root("jsonl", root), check_images=check_images, allow_outside_root=allow_outside_root
    )
