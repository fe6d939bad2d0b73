"""Encoding for the live index: database items and free queries to packed binary codes.

Codes are the sign bits of the model's tanh outputs (``metrics.retrieval.pack_codes``), the bits the
project's mAP counts; one forward pass per item and modality batch (``evaluation.encode``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import MultiModalData
from crossforget.data.fingerprint import item_ids
from crossforget.data.images import center_crop_resize, load_image
from crossforget.metrics.retrieval import pack_codes
from crossforget.models.inputs import BatchSource
from crossforget.tasks.hashing.evaluation import encode


@dataclass
class ItemTable:
    """Per database item: dataset index, stable id, labels and first caption (what a hit shows)."""

    ids: np.ndarray
    item_ids: np.ndarray
    labels: np.ndarray
    captions: np.ndarray

    def subset(self, rows: np.ndarray) -> ItemTable:
        return ItemTable(self.ids[rows], self.item_ids[rows], self.labels[rows], self.captions[rows])


def item_table(data: MultiModalData, indices: np.ndarray) -> ItemTable:
    names = item_ids(data)
    indices = np.asarray(indices, dtype=np.int64)
    return ItemTable(
        ids=indices,
        item_ids=np.asarray([names[i] for i in indices], dtype=np.str_),
        labels=data.labels[indices].astype(np.uint8),
        captions=np.asarray([data.captions[i][0] for i in indices], dtype=np.str_),
    )


def check_bits(bits: int) -> None:
    if bits % 8:
        raise CrossforgetError(
            f"FAISS binary indexes need a bit length that is a multiple of 8, the model has {bits}; "
            "train with --bits 16, 32 or 64"
        )


def encode_items(
    model: torch.nn.Module, store: BatchSource, indices: np.ndarray, batch_size: int = 512
) -> dict[str, np.ndarray]:
    """Packed codes of both modalities, rows in ``indices`` order."""
    codes = encode(model, store, np.asarray(indices, dtype=np.int64), batch_size)
    return {"image": pack_codes(codes.image, "image codes"), "text": pack_codes(codes.text, "text codes")}


@torch.no_grad()
def encode_text(model: torch.nn.Module, preprocessor: object, texts: Sequence[str]) -> np.ndarray:
    """Packed text codes of free sentences, tokenized by the model's own preprocessor."""
    tokenize = getattr(preprocessor, "texts", None)
    if not callable(tokenize):
        raise CrossforgetError(
            "this index's model reads cached features, not raw text; free-text search needs a model "
            "trained with --backbone small or clip"
        )
    ids, mask = tokenize(list(texts))
    device = next(model.parameters()).device
    model.eval()
    codes = model.encode_text({"text_ids": ids.to(device), "text_mask": mask.to(device)})
    return pack_codes(codes.float().cpu(), "text codes")


def read_image(source: str | Path | bytes, size: int) -> np.ndarray:
    """An image file (or its bytes) as (size, size, 3) uint8, resized like the training images."""
    if isinstance(source, bytes):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(source)) as img:
                return center_crop_resize(img.convert("RGB"), size)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            raise CrossforgetError(
                "the uploaded bytes are not an image Pillow can decode (PNG, JPEG, ...)"
            ) from None
    path = Path(source)
    if not path.is_file():
        raise CrossforgetError(f"--image {path} does not exist or is not a file")
    image = load_image(path, size)
    if image is None:
        raise CrossforgetError(f"--image {path} is not an image Pillow can decode (PNG, JPEG, ...)")
    return image


@torch.no_grad()
def encode_image(model: torch.nn.Module, preprocessor: object, image: np.ndarray) -> np.ndarray:
    """Packed image code of one (H, W, 3) uint8 image."""
    to_tensor = getattr(preprocessor, "images", None)
    if not callable(to_tensor):
        raise CrossforgetError(
            "this index's model reads cached features, not pixels; image search needs a model trained "
            "with --backbone small or clip"
        )
    device = next(model.parameters()).device
    model.eval()
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))[None].to(device)
    codes = model.encode_image({"images": to_tensor(pixels)})
    return pack_codes(codes.float().cpu(), "image codes")
