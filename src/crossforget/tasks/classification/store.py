"""A single-label dataset's images as model batches, and its forget / retain split of the training set."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from crossforget.core import distributed
from crossforget.data.container import SingleLabelData
from crossforget.losses.base import Batch
from crossforget.metrics.classification import forget_mask
from crossforget.models.classifier import ImagePreprocessor
from crossforget.models.inputs import augment_images


class ImageStore:
    """A dataset's images at the model's input size, decoded once when they fit in ``memory_budget``."""

    def __init__(self, data: SingleLabelData, preprocessor: ImagePreprocessor, memory_budget: int = 4 << 30):
        self.preprocessor = preprocessor
        self.images = data.images
        size = preprocessor.image_size
        self.pixels: torch.Tensor | None = None
        if len(data) * size * size * 3 <= memory_budget:
            self.pixels = torch.from_numpy(np.ascontiguousarray(self.images.load(range(len(data)), size)))
        self.targets = torch.from_numpy(data.targets)
        self.one_hot = torch.from_numpy(data.one_hot().astype(np.float32))

    def __len__(self) -> int:
        return int(self.targets.numel())

    def batch(self, indices: torch.Tensor, targets: torch.Tensor | None = None) -> Batch:
        """``targets`` overrides the true classes (relabelled training)."""
        if self.pixels is not None:
            pixels = self.pixels[indices]
        else:
            pixels = torch.from_numpy(self.images.load(indices.tolist(), self.preprocessor.image_size))
        labels = self.targets[indices] if targets is None else targets
        return {"images": self.preprocessor.images(pixels), "labels": labels}


def make_store(data: SingleLabelData, model_config: dict) -> ImageStore:
    return ImageStore(data, ImagePreprocessor.from_config(model_config))


def classifier_batches(
    store: ImageStore,
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
    targets: torch.Tensor | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Batch]:
    """Mini-batches over ``indices`` in their order (or shuffled); ``targets`` aligns with ``indices``.

    ``shard`` = (rank, world size): only that rank's rows of each batch, augmented as in one process.
    """
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    order = torch.randperm(idx.numel(), generator=generator) if shuffle else torch.arange(idx.numel())
    for start in range(0, idx.numel(), batch_size):
        chunk = order[start : start + batch_size]
        part = slice(None) if shard is None else distributed.shard_slice(chunk.numel(), shard)
        batch = store.batch(idx[chunk[part]], None if targets is None else targets[chunk[part]])
        if augment:
            rows = None if shard is None else (part, chunk.numel())
            batch["images"] = augment_images(batch["images"], generator, rows=rows)
        yield batch


def forget_split(data: SingleLabelData, forget_classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(D_f, D_r) on the training split."""
    mask = forget_mask(torch.from_numpy(data.targets[data.train]), forget_classes).numpy()
    return data.train[mask], data.train[~mask]
