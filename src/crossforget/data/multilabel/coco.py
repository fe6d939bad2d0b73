"""MS-COCO 2017 from its official layout as multi-label image-caption pairs.

Labels are the 80 instance categories (multi-hot, columns in category-id order, crowd regions
included); texts are the human captions. Images without any instance annotation are dropped, as DSPH
does: an unlabelled item has no relevant neighbours, so it cannot be scored in retrieval.

``instances_train2017.json`` is ~450 MB, almost all of it segmentation polygons this loader never
needs. It is therefore scanned rather than parsed: only the small ``images``/``categories`` arrays go
through the JSON decoder and the (image_id, category_id) pairs are read with one regular expression,
about ten times faster than ``json.loads``. A file without the regular shape that scan relies on
falls back to a full parse.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import FileImages, MultiModalData
from crossforget.data.images import unreadable_images
from crossforget.data.registry import register_dataset, require_root

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
LAYOUT = "ROOT/<split>/*.jpg, ROOT/annotations/captions_<split>.json, ROOT/annotations/instances_<split>.json"

_ID_TOKEN = re.compile(r'"(image_id|category_id)"\s*:\s*(\d+)')


@dataclass
class CocoInstances:
    """What the loader needs from an instances file."""

    images: list[dict]
    categories: list[dict]
    pairs: np.ndarray  # (annotations, 2) int64: image_id, category_id


def _array_after_key(text: str, key: str) -> list | None:
    """Decode the JSON array that follows the first ``"key":``, or None when there is none."""
    match = re.search(rf'"{key}"\s*:\s*\[', text)
    if match is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, match.end() - 1)
    except json.JSONDecodeError:
        return None
    return value


def _scan_instances(text: str) -> CocoInstances | None:
    """Fast path; None whenever the file does not look exactly like an official instances file."""
    images = _array_after_key(text, "images")
    categories = _array_after_key(text, "categories")
    if not images or not categories:
        return None
    if not all(isinstance(x, dict) and "id" in x and "file_name" in x for x in images):
        return None
    if not all(isinstance(x, dict) and "id" in x and "name" in x for x in categories):
        return None
    tokens = _ID_TOKEN.findall(text)
    if not tokens or len(tokens) % 2:
        return None
    is_image = np.fromiter((key == "image_id" for key, _ in tokens), dtype=bool, count=len(tokens))
    # Each annotation holds one image_id and one category_id, so the tokens must come in mixed pairs.
    if np.any(is_image[0::2] == is_image[1::2]):
        return None
    values = np.fromiter((int(v) for _, v in tokens), dtype=np.int64, count=len(tokens)).reshape(-1, 2)
    first_is_image = is_image[0::2]
    pairs = np.where(first_is_image[:, None], values, values[:, ::-1])
    return CocoInstances(images=images, categories=categories, pairs=pairs)


def _parse_instances(raw: bytes, path: Path) -> CocoInstances:
    """Slow, fully general path: the whole file through ``json.loads``."""
    try:
        data = json.loads(raw)
        images, categories = data["images"], data["categories"]
        pairs = np.array(
            [(a["image_id"], a["category_id"]) for a in data["annotations"]], dtype=np.int64
        ).reshape(-1, 2)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CrossforgetError(
            f"{path} is not a COCO instances file ({type(exc).__name__}: {exc}); "
            "use the official annotations_trainval2017 files"
        ) from None
    return CocoInstances(images=images, categories=categories, pairs=pairs)


def read_instances(path: Path) -> CocoInstances:
    raw = path.read_bytes()
    try:
        fast = _scan_instances(raw.decode("utf-8"))
    except UnicodeDecodeError:
        fast = None
    return fast if fast is not None else _parse_instances(raw, path)


def read_captions(path: Path) -> dict[int, list[str]]:
    """Captions per image id, each image's captions in annotation-id order."""
    try:
        annotations = json.loads(path.read_bytes())["annotations"]
        triples = sorted((a["image_id"], a["id"], a["caption"]) for a in annotations)
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CrossforgetError(
            f"{path} is not a COCO captions file ({type(exc).__name__}: {exc}); "
            "use the official annotations_trainval2017 files"
        ) from None
    captions: dict[int, list[str]] = {}
    for image_id, _, caption in triples:
        captions.setdefault(image_id, []).append(caption.strip())
    return captions


def _check_layout(root: Path, splits: Sequence[str]) -> None:
    """One error naming everything that is missing, so the user fixes the layout in one go."""
    if not root.is_dir():
        raise CrossforgetError(f"COCO root {root} is not a folder; expected {LAYOUT}")
    expected = []
    for split in splits:
        expected += [root / split, root / "annotations" / f"captions_{split}.json"]
        expected.append(root / "annotations" / f"instances_{split}.json")
    missing = [str(p.relative_to(root)) for p in expected if not p.exists()]
    if missing:
        raise CrossforgetError(f"COCO root {root} lacks {', '.join(missing)}; expected {LAYOUT}")


def _class_table(categories: list[dict]) -> tuple[np.ndarray, list[str], list[str]]:
    ordered = sorted(categories, key=lambda c: int(c["id"]))
    ids = np.array([int(c["id"]) for c in ordered], dtype=np.int64)
    return ids, [str(c["name"]) for c in ordered], [str(c.get("supercategory", "")) for c in ordered]


class CocoDataset:
    """Kept images of the given splits, in split order then image-id order.

    ``skipped`` counts images dropped for any reason; ``info["splits"]`` breaks the count down:
    listed without instance annotation, listed without caption, listed but missing on disk, on disk but
    listed in no annotation file (unannotated), and (with ``check_images``) files Pillow cannot open.
    """

    def __init__(
        self, root: str | Path, splits: Sequence[str] = ("train2017", "val2017"), check_images: bool = True
    ) -> None:
        self.root = Path(root)
        self.check_images = check_images
        self.splits = [splits] if isinstance(splits, str) else list(splits)
        if not self.splits:
            raise CrossforgetError("no COCO split given; use e.g. splits=('train2017', 'val2017')")
        _check_layout(self.root, self.splits)
        self.image_files: list[Path] = []
        self.image_ids: list[int] = []
        self.captions: list[list[str]] = []
        label_rows: list[np.ndarray] = []
        split_info: dict[str, dict[str, int]] = {}
        category_ids: np.ndarray | None = None
        for split in self.splits:
            instances = read_instances(self.root / "annotations" / f"instances_{split}.json")
            ids, names, supers = _class_table(instances.categories)
            if category_ids is None:
                category_ids, self.class_names, self.supercategories = ids, names, supers
            elif not np.array_equal(ids, category_ids) or names != self.class_names:
                raise CrossforgetError(
                    f"instances_{split}.json has other categories than instances_{self.splits[0]}.json; "
                    "use annotation files from the same COCO release"
                )
            rows, stats = self._load_split(split, instances, category_ids)
            label_rows.append(rows)
            split_info[split] = stats
        self.labels = np.concatenate(label_rows).astype(np.uint8)
        self.skipped = sum(s["listed"] + s["unlisted_on_disk"] - s["kept"] for s in split_info.values())
        self.info = {
            "root": str(self.root),
            "kept": len(self.image_files),
            "skipped": self.skipped,
            "splits": split_info,
        }

    def _load_split(
        self, split: str, instances: CocoInstances, category_ids: np.ndarray
    ) -> tuple[np.ndarray, dict[str, int]]:
        folder = self.root / split
        captions = read_captions(self.root / "annotations" / f"captions_{split}.json")
        on_disk = {e.name for e in os.scandir(folder) if Path(e.name).suffix.lower() in IMAGE_SUFFIXES}
        listed = {int(img["id"]): str(img["file_name"]) for img in instances.images}
        annotated = set(np.unique(instances.pairs[:, 0]).tolist())
        unknown_categories = np.setdiff1d(instances.pairs[:, 1], category_ids)
        if unknown_categories.size:
            raise CrossforgetError(
                f"instances_{split}.json annotates category id(s) {unknown_categories[:5].tolist()} that are "
                "not in its categories list; the file is damaged, re-extract it"
            )
        stats = dict.fromkeys(("no_instances", "no_captions", "missing_on_disk"), 0)
        candidates = []
        for image_id in sorted(listed):
            if image_id not in annotated:
                reason = "no_instances"
            elif not captions.get(image_id):
                reason = "no_captions"
            elif Path(listed[image_id]).name not in on_disk:
                reason = "missing_on_disk"
            else:
                candidates.append(image_id)
                continue
            stats[reason] += 1
        listed_names = {Path(name).name for name in listed.values()}
        stats.update(listed=len(listed), unlisted_on_disk=len(on_disk - listed_names))
        paths = [folder / Path(listed[i]).name for i in candidates]
        unreadable = set(unreadable_images(paths)) if self.check_images else set()
        kept = [i for k, i in enumerate(candidates) if k not in unreadable]
        stats.update(unreadable=len(unreadable), kept=len(kept))

        kept_ids = np.array(kept, dtype=np.int64)
        rows = np.zeros((len(kept), len(category_ids)), dtype=np.uint8)
        pairs = instances.pairs[np.isin(instances.pairs[:, 0], kept_ids)]
        rows[np.searchsorted(kept_ids, pairs[:, 0]), np.searchsorted(category_ids, pairs[:, 1])] = 1
        self.image_ids += kept
        self.image_files += [folder / Path(listed[i]).name for i in kept]
        self.captions += [captions[i] for i in kept]
        return rows, stats

    def __len__(self) -> int:
        return len(self.image_files)

    def to_multimodal(self) -> MultiModalData:
        return MultiModalData(
            name="coco",
            class_names=list(self.class_names),
            labels=self.labels,
            captions=[list(c) for c in self.captions],
            images=FileImages(list(self.image_files)),
            supercategories=list(self.supercategories),
            info=dict(self.info),
        )


def load_coco(
    root: str | Path, splits: Sequence[str] = ("train2017", "val2017"), check_images: bool = True
) -> MultiModalData:
    """``CocoDataset(...).to_multimodal()``: the form the dataset registry calls."""
    return CocoDataset(root, splits=splits, check_images=check_images).to_multimodal()


@register_dataset("coco", "multilabel")
def coco_dataset(
    root: str | None = None, splits: Sequence[str] | str = ("train2017", "val2017"), check_images: bool = True
) -> MultiModalData:
    """The registry's ``coco``: ``splits`` may also be comma-separated text (from ``--data-option``)."""
    if isinstance(splits, str):
        splits = tuple(s for s in splits.split(",") if s)
    return load_coco(require_root("coco", root), splits=splits, check_images=check_images)
