"""Image decoding and resizing with Pillow and NumPy (no torchvision)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def load_image(path: str | Path, size: int) -> np.ndarray | None:
    """Decode an image as RGB, resize the short side and centre-crop to ``size``; None if undecodable."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            return center_crop_resize(img, size)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def center_crop_resize(img: Image.Image, size: int) -> np.ndarray:
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def resize_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """Resize a batch of square uint8 images."""
    out = np.empty((batch.shape[0], size, size, 3), dtype=np.uint8)
    for i, image in enumerate(batch):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))
    return out


def unreadable_images(paths: Sequence[Path]) -> list[int]:
    """Indices of files Pillow cannot even open (empty, not an image, decompression bomb).

    Only the header is read, so this is cheap; files that open but fail to decode later are still
    replaced by a grey image and counted by ``FileImages`` instead of crashing an epoch.
    """
    bad = []
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018  (touching the header is the check)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            bad.append(index)
    return bad
