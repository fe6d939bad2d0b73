"""The one in-memory shape every multimodal dataset is turned into.

Loaders (built-in scenes, COCO, MIRFlickr-25K, NUS-WIDE, bring-your-own) all return a
``MultiModalData``; everything downstream (splits, training, unlearning, metrics) reads only this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from crossforget.core.errors import CrossforgetError


class ImageSource(Protocol):
    """Random access to RGB images as uint8 arrays of shape (n, size, size, 3)."""

    def __len__(self) -> int: ...

    def load(self, indices: Sequence[int], size: int) -> np.ndarray: ...


@dataclass
class ArrayImages:
    """Images already decoded in memory, shape (N, H, W, 3) uint8."""

    array: np.ndarray

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def load(self, indices: Sequence[int], size: int) -> np.ndarray:
        batch = self.array[np.asarray(indices, dtype=np.int64)]
        if batch.shape[1] == size and batch.shape[2] == size:
            return batch
        from crossforget.data.images import resize_batch

        return resize_batch(batch, size)


@dataclass
class FileImages:
    """Images decoded from files on demand; undecodable files give a grey image and are counted."""

    paths: list[Path]
    failed: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.paths)

    def replaced(self) -> list[str]:
        """Files that opened but failed to decode (e.g. truncated), served as grey images so far."""
        return [str(self.paths[i]) for i in sorted(self.failed)]

    def load(self, indices: Sequence[int], size: int) -> np.ndarray:
        from crossforget.data.images import load_image

        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        for row, index in enumerate(indices):
            image = load_image(self.paths[int(index)], size)
            if image is None:
                self.failed.add(int(index))
                out[row] = 127
            else:
                out[row] = image
        return out


@dataclass
class MultiModalData:
    """Paired images and texts with multi-hot labels.

    ``captions[i]`` holds one or more texts for item ``i``: training draws one per epoch,
    evaluation always uses the first.
    """

    name: str
    class_names: list[str]
    labels: np.ndarray
    captions: list[list[str]]
    images: ImageSource | None
    supercategories: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.uint8)
        n = self.labels.shape[0]
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.class_names):
            raise CrossforgetError(
                f"{self.name}: labels have shape {self.labels.shape} but there are "
                f"{len(self.class_names)} class names; the label file and class list disagree"
            )
        if len(self.captions) != n:
            raise CrossforgetError(f"{self.name}: {len(self.captions)} texts for {n} labelled items")
        if self.images is not None and len(self.images) != n:
            raise CrossforgetError(f"{self.name}: {len(self.images)} images for {n} labelled items")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, name: str) -> int:
        """Index of a class by name (case-insensitive); the error lists the valid names."""
        lookup = {c.lower(): i for i, c in enumerate(self.class_names)}
        key = name.strip().lower()
        if key not in lookup:
            valid = ", ".join(self.class_names)
            raise CrossforgetError(f"unknown class {name!r} for dataset {self.name}; valid classes: {valid}")
        return lookup[key]

    def require_images(self) -> ImageSource:
        if self.images is None:
            raise CrossforgetError(
                f"{self.name} has no image modality loaded; supply the images (see the README section on "
                "this dataset) or use a feature cache"
            )
        return self.images
