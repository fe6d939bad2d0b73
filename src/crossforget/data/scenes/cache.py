"""The on-disk cache of the ``scenes`` dataset, and its registration as a retrieval dataset.

Generating 10,000 scenes takes a while; the arrays and texts are stored once per
(generator version, size, image size, seed) under ``$CROSSFORGET_CACHE/scenes`` and re-read after
checking that they are complete and were made with the same parameters.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_bytes, atomic_write_json
from crossforget.data.container import ArrayImages, MultiModalData
from crossforget.data.registry import register_dataset
from crossforget.data.scenes import generate
from crossforget.data.scenes.vocabulary import CLASS_NAMES


def default_cache_dir() -> Path:
    """$CROSSFORGET_CACHE if set, else ~/.cache/crossforget."""
    root = os.environ.get("CROSSFORGET_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "crossforget"


def load_scenes(
    num_items: int = 10_000, image_size: int = 48, seed: int = 0, cache_dir: Path | None = None
) -> MultiModalData:
    """Like ``generate_scenes``, but reuse a copy stored under ``cache_dir/scenes`` when present."""
    generate.check_params(num_items, image_size, seed)
    params = generate.scene_params(num_items, image_size, seed)
    folder = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "scenes"
    stem = f"scenes-v{generate.GENERATOR_VERSION}-n{num_items}-s{image_size}-seed{seed}"
    arrays_path, meta_path = folder / f"{stem}.npz", folder / f"{stem}.json"
    cached = _read_cache(arrays_path, meta_path, params)
    if cached is not None:
        return cached
    data = generate.generate_scenes(num_items, image_size, seed)
    if not isinstance(data.images, ArrayImages):
        raise TypeError("generate_scenes must return in-memory images")
    buffer = io.BytesIO()
    np.savez(buffer, images=data.images.array, labels=data.labels)
    meta = {"params": params, "class_names": data.class_names, "supercategories": data.supercategories,
            "captions": data.captions, "info": data.info}  # fmt: skip
    try:
        # Arrays first: the metadata file is the marker that both are complete.
        atomic_write_bytes(arrays_path, buffer.getvalue())
        atomic_write_json(meta_path, meta)
    except OSError as exc:
        raise CrossforgetError(
            f"cannot write the scenes cache in {folder} ({exc.strerror}); "
            "set CROSSFORGET_CACHE to a writable folder"
        ) from exc
    return data


def _read_cache(arrays_path: Path, meta_path: Path, params: dict) -> MultiModalData | None:
    """The cached dataset, or None when it is missing, unreadable, damaged (then it is rebuilt) or made
    with other parameters."""
    if not (arrays_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(arrays_path, allow_pickle=False) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (
        OSError,
        ValueError,
        KeyError,
        RecursionError,
        zipfile.BadZipFile,
    ):  # UnicodeError is a ValueError
        return None
    n, size = params["num_items"], params["image_size"]
    captions = meta.get("captions") if isinstance(meta, dict) else None
    if (
        not isinstance(meta, dict)
        or not isinstance(captions, list)
        or not all(isinstance(c, list) and c and all(isinstance(t, str) for t in c) for c in captions)
        or not isinstance(meta.get("supercategories"), list)
        or not isinstance(meta.get("info"), dict)
        or meta.get("params") != params
        or meta.get("class_names") != list(CLASS_NAMES)
        or images.shape != (n, size, size, 3)
        or images.dtype != np.uint8
        or labels.shape != (n, len(CLASS_NAMES))
        or len(meta.get("captions", ())) != n
    ):
        return None
    return MultiModalData(
        name="scenes",
        class_names=meta["class_names"],
        labels=labels,
        captions=meta["captions"],
        images=ArrayImages(images),
        supercategories=meta["supercategories"],
        info=meta["info"],
    )


@register_dataset("scenes", "multilabel", about="built in")
def scenes_dataset(num_items: int = 10_000, image_size: int = 48, seed: int = 0) -> MultiModalData:
    """The registry's ``scenes``: :func:`load_scenes` with the default cache folder."""
    return load_scenes(num_items=num_items, image_size=image_size, seed=seed, cache_dir=None)
