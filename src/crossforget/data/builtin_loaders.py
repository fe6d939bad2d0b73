"""Registers every dataset that ships with crossforget (importing this module has that effect)."""

from __future__ import annotations

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import MultiModalData
from crossforget.data.registry import register_dataset


@register_dataset("scenes", {"num_items": 10_000, "image_size": 48, "seed": 0})
def _scenes(num_items: int, image_size: int, seed: int) -> MultiModalData:
    from crossforget.data.scenes.generate import load_scenes

    return load_scenes(num_items=num_items, image_size=image_size, seed=seed, cache_dir=None)


def _require_root(name: str, root: str | None) -> str:
    if not root:
        raise CrossforgetError(
            f"dataset {name} needs --data-root pointing at its folder (see docs/datasets.md)"
        )
    return root


@register_dataset("coco", {"root": None, "splits": ("train2017", "val2017"), "check_images": True})
def _coco(root: str | None, splits: tuple[str, ...], check_images: bool) -> MultiModalData:
    from crossforget.data.multilabel.coco import load_coco

    if isinstance(splits, str):
        splits = tuple(s for s in splits.split(",") if s)
    return load_coco(_require_root("coco", root), splits=splits, check_images=check_images)


@register_dataset(
    "mirflickr", {"root": None, "image_array": None, "tag_vocabulary": None, "check_images": True}
)
def _mirflickr(
    root: str | None, image_array: str | None, tag_vocabulary: str | None, check_images: bool
) -> MultiModalData:
    from crossforget.data.multilabel.mirflickr import load_mirflickr

    return load_mirflickr(
        _require_root("mirflickr", root),
        image_array=image_array,
        tag_vocabulary=tag_vocabulary,
        check_images=check_images,
    )


@register_dataset("nuswide", {"root": None, "num_concepts": 21, "check_images": True})
def _nuswide(root: str | None, num_concepts: int, check_images: bool) -> MultiModalData:
    from crossforget.data.multilabel.nuswide import load_nuswide

    return load_nuswide(_require_root("nuswide", root), num_concepts=num_concepts, check_images=check_images)


@register_dataset("jsonl", {"root": None, "check_images": True, "allow_outside_root": False})
def _jsonl(root: str | None, check_images: bool, allow_outside_root: bool) -> MultiModalData:
    from crossforget.data.multilabel.jsonl_pairs import load_jsonl_pairs

    return load_jsonl_pairs(
        _require_root("jsonl", root), check_images=check_images, allow_outside_root=allow_outside_root
    )
