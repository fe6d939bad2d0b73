"""A fingerprint of the data a model was trained on, so that changed data is refused, not silently used.

Checkpoints name their dataset (a spec) and re-read it; if the files behind the spec changed since
training (``classes.txt`` reordered, ``pairs.jsonl`` shuffled or relabelled, a class removed), every
class index, split and number would silently be wrong. The fingerprint records the class names in
order, the item count and hashes of the item ids with their labels (in order and as a set, to tell a
reordering from an edit) and of the captions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import FileImages, MultiModalData

FINGERPRINT_KEY = "data_fingerprint"
_SHOW = 3


def item_ids(data: MultiModalData) -> list[str]:
    """Stable names of the items: image paths relative to the data root, else positions."""
    if isinstance(data.images, FileImages):
        root = data.info.get("root")
        return [os.path.relpath(p, root) if root else os.path.basename(p) for p in data.images.paths]
    return [str(i) for i in range(len(data))]


def data_fingerprint(data: MultiModalData) -> dict:
    """{"classes", "items", "items_sha256", "items_unordered_sha256", "captions_sha256"} of ``data``."""
    ordered, captions = hashlib.sha256(), hashlib.sha256()
    per_item = []
    for item, row, texts in zip(item_ids(data), data.labels, data.captions, strict=True):
        names = "\x1f".join(data.class_names[j] for j in row.nonzero()[0])
        digest = hashlib.sha256(f"{item}\x1e{names}".encode()).digest()
        ordered.update(digest)
        per_item.append(digest)
        captions.update(("\x1f".join(texts) + "\x1e").encode())
    unordered = hashlib.sha256(b"".join(sorted(per_item)))
    return {
        "classes": list(data.class_names),
        "items": len(data),
        "items_sha256": ordered.hexdigest(),
        "items_unordered_sha256": unordered.hexdigest(),
        "captions_sha256": captions.hexdigest(),
    }


def _class_change(before: list[str], now: list[str]) -> str:
    removed = [c for c in before if c not in now]
    added = [c for c in now if c not in before]
    if removed or added:
        parts = ([f"removed {removed[:_SHOW]}"] if removed else []) + (
            [f"added {added[:_SHOW]}"] if added else []
        )
        return f"the classes changed ({', '.join(parts)})"
    position = next(i for i, (a, b) in enumerate(zip(before, now, strict=True)) if a != b)
    return (
        f"the class order changed (position {position}: {before[position]!r} at training, "
        f"{now[position]!r} now; classes.txt reordered?)"
    )


def fingerprint_change(recorded: Mapping, data: MultiModalData, current: dict | None = None) -> str | None:
    """What differs between a recorded fingerprint and ``data`` (None when nothing does).

    A record with only "classes" (checkpoints from before fingerprints) checks the classes alone.
    """
    classes = list(recorded.get("classes", data.class_names))
    if classes != list(data.class_names):
        return _class_change(classes, list(data.class_names))
    if "items" not in recorded:
        return None
    current = current or data_fingerprint(data)
    if recorded["items"] != current["items"]:
        return f"the number of items changed ({recorded['items']} at training, {current['items']} now)"
    if recorded.get("items_sha256") != current["items_sha256"]:
        if recorded.get("items_unordered_sha256") == current["items_unordered_sha256"]:
            return "the same items are in another order (pairs.jsonl shuffled?), so the split would differ"
        return "item ids or labels changed (images renamed or relabelled?)"
    if recorded.get("captions_sha256") != current["captions_sha256"]:
        return "the captions changed"
    return None


def check_data(config: Mapping, data: MultiModalData, where: str, current: dict | None = None) -> None:
    """Refuse ``data`` when it is not what the checkpoint ``config`` was trained on."""
    recorded = config.get(FINGERPRINT_KEY) or {}
    change = fingerprint_change({"classes": config.get("class_names", data.class_names)}, data)
    change = change or fingerprint_change(recorded, data, current)
    if change is not None:
        raise CrossforgetError(
            f"the data of {where} is not what it was trained on: {change}; restore the data, "
            "or train a new model on it"
        )
