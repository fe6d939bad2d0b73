"""Turning a MultiModalData into model-ready batches.

A ``Preprocessor`` knows the image size, pixel normalisation and tokenizer of one backbone; a
``BatchSource`` hands out batches by dataset index. ``TensorStore`` tokenizes every caption once and
keeps the images decoded in memory when they fit (else decodes per batch). Batches are dicts such as
images (B,3,H,W) float, text_ids/text_mask (B,L), labels (B,C) float.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from crossforget.data.container import MultiModalData
from crossforget.losses.base import Batch
from crossforget.models.tokenizer import WordTokenizer


class Preprocessor(Protocol):
    """Backbone-specific input handling; ``to_config`` must describe it fully (stored in checkpoints)."""

    image_size: int

    def images(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_config(self) -> dict: ...


class BatchSource(Protocol):
    """Batches by dataset index; ``num_captions`` lets training draw one caption per item."""

    labels: torch.Tensor
    num_captions: torch.Tensor

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> Batch: ...


@dataclass
class WordPreprocessor:
    """Pixel statistics and word tokenizer of the small backbone (CLIP brings its own)."""

    image_size: int
    tokenizer: WordTokenizer
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B,H,W,3) -> normalised float (B,3,H,W)."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer.encode(texts)
        return ids, ids != 0

    def to_config(self) -> dict:
        return {"image_size": self.image_size, "tokenizer": self.tokenizer.to_config(),
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_config(cls, config: dict) -> WordPreprocessor:
        return cls(config["image_size"], WordTokenizer.from_config(config["tokenizer"]),
                   tuple(config["mean"]), tuple(config["std"]))


class TensorStore:
    """A dataset's items, tokenized once; images decoded once when they fit in ``memory_budget`` bytes."""

    def __init__(self, data: MultiModalData, preprocessor: Preprocessor, memory_budget: int = 4 << 30) -> None:
        self.preprocessor = preprocessor
        size = preprocessor.image_size
        self.images = data.require_images()
        self.pixels: torch.Tensor | None = None
        if len(data) * size * size * 3 <= memory_budget:
            self.pixels = torch.from_numpy(np.ascontiguousarray(self.images.load(range(len(data)), size)))
        per_item = max(len(c) for c in data.captions)
        flat = [caps[j % len(caps)] for caps in data.captions for j in range(per_item)]
        ids, mask = preprocessor.texts(flat)
        self.text_ids = ids.view(len(data), per_item, -1)
        self.text_mask = mask.view(len(data), per_item, -1)
        self.num_captions = torch.tensor([len(c) for c in data.captions])
        self.labels = torch.from_numpy(data.labels.astype(np.float32))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> Batch:
        """``caption`` picks one caption per item (training); None means the canonical first one."""
        if caption is None:
            caption = torch.zeros_like(indices)
        if self.pixels is not None:
            pixels = self.pixels[indices]
        else:
            pixels = torch.from_numpy(self.images.load(indices.tolist(), self.preprocessor.image_size))
        return {
            "images": self.preprocessor.images(pixels),
            "text_ids": self.text_ids[indices, caption],
            "text_mask": self.text_mask[indices, caption],
            "labels": self.labels[indices],
        }


def augment_images(images: torch.Tensor, generator: torch.Generator, max_shift: int = 3) -> torch.Tensor:
    """Random horizontal flips and small translations (reflect padding), cheap regularisation."""
    b, _, h, w = images.shape
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip.view(b, 1, 1, 1), images.flip(3), images)
    if max_shift <= 0:
        return images
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).view(b, 1, h, 1).expand(b, 3, h, w + 2 * max_shift)
    cropped = padded.gather(2, rows)
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).view(b, 1, 1, w).expand(b, 3, h, w)
    return cropped.gather(3, cols)


def iterate_batches(store: BatchSource, indices: np.ndarray | torch.Tensor, batch_size: int, *,
                    shuffle: bool = False, generator: torch.Generator | None = None,
                    random_caption: bool = False, augment: bool = False) -> Iterator[Batch]:
    """Mini-batches over ``indices``; training draws a random caption per item and may augment."""
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    if shuffle:
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
    for start in range(0, idx.numel(), batch_size):
        chunk = idx[start : start + batch_size]
        caption = None
        if random_caption:
            draws = torch.rand(chunk.numel(), generator=generator)
            caption = (draws * store.num_captions[chunk]).long()
        batch = store.batch(chunk, caption)
        if augment and batch.get("images") is not None and batch["images"].dim() == 4:
            batch["images"] = augment_images(batch["images"], generator)
        yield batch
