"""The in-memory shapes every dataset is turned into: ``MultiModalData`` and ``SingleLabelData``.

Retrieval loaders (built-in scenes, COCO, MIRFlickr-25K, NUS-WIDE, bring-your-own) all return a
``MultiModalData``; everything downstream (splits, training, unlearning, metrics) reads only this.
Classification loaders (scenes-single, digits, image folders, ImageNet-100, DeepFashion) return a
``SingleLabelData``: images, one class per image and a train/test split.
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
        from crossforget.data.images import resize_batch  # Pillow only when images are decoded or resized

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
        from crossforget.data.images import load_image  # Pillow only when images are decoded or resized

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


@dataclass
class SingleLabelData:
    """Images with one class each; ``train`` and ``test`` index into them.

    ``aliases`` maps other accepted spellings (lower case: synonyms, WordNet ids) to a class name.
    ``info`` records how the data was made: the source, skipped files, the split rule, a fingerprint.
    """

    name: str
    class_names: list[str]
    targets: np.ndarray
    images: ImageSource
    train: np.ndarray
    test: np.ndarray
    info: dict = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.train = np.sort(np.asarray(self.train, dtype=np.int64))
        self.test = np.sort(np.asarray(self.test, dtype=np.int64))
        n = self.targets.shape[0]
        if self.targets.ndim != 1:
            raise CrossforgetError(f"{self.name}: targets must be one class index per image")
        if len(self.images) != n:
            raise CrossforgetError(f"{self.name}: {len(self.images)} images for {n} targets")
        if n and (self.targets.min() < 0 or self.targets.max() >= len(self.class_names)):
            raise CrossforgetError(f"{self.name}: a target lies outside the {len(self.class_names)} classes")
        if self.train.size == 0 or self.test.size == 0:
            raise CrossforgetError(f"{self.name}: the train and the test split must both hold images")
        if np.intersect1d(self.train, self.test).size:
            raise CrossforgetError(f"{self.name}: train and test splits overlap")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def one_hot(self) -> np.ndarray:
        """(N, C) uint8 labels: the multi-hot form the unlearning methods share with hashing."""
        out = np.zeros((len(self), self.num_classes), dtype=np.uint8)
        out[np.arange(len(self)), self.targets] = 1
        return out

    def class_index(self, name: str) -> int:
        """Index of a class by name, alias or WordNet id (case-insensitive); errors list the valid names."""
        key = name.strip().lower()
        lookup = {c.lower(): i for i, c in enumerate(self.class_names)}
        if key in lookup:
            return lookup[key]
        if key in self.aliases and self.aliases[key].lower() in lookup:
            return lookup[self.aliases[key].lower()]
        raise CrossforgetError(
            f"class {name!r} is not in {self.name}; valid classes: {', '.join(self.class_names)}"
        )

    def class_indices(self, names: Sequence[str]) -> list[int]:
        """Indices of forget classes: each must exist and have training images; not every class."""
        if not names:
            raise CrossforgetError("name at least one class to forget (e.g. --forget dog)")
        indices = list(dict.fromkeys(self.class_index(n) for n in names))
        if len(indices) == self.num_classes:
            raise CrossforgetError("the request forgets every class; nothing would be retained")
        train_counts = np.bincount(self.targets[self.train], minlength=self.num_classes)
        empty = [self.class_names[i] for i in indices if train_counts[i] == 0]
        if empty:
            raise CrossforgetError(f"no training image of {', '.join(empty)}; nothing to forget")
        return indices

    def summary(self) -> dict:
        """Sizes and per-class counts, for result files and the console."""
        train = np.bincount(self.targets[self.train], minlength=self.num_classes)
        test = np.bincount(self.targets[self.test], minlength=self.num_classes)
        return {
            "name": self.name,
            "classes": self.num_classes,
            "train": int(self.train.size),
            "test": int(self.test.size),
            "train_per_class": {"min": int(train.min()), "max": int(train.max())},
            "test_per_class": {"min": int(test.min()), "max": int(test.max())},
            **{k: v for k, v in self.info.items() if k in ("skipped", "split", "fingerprint")},
        }
