"""What the tag-based benchmarks (MIRFlickr-25K, NUS-WIDE) share: tag words as texts, one hand-off."""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

import numpy as np

from crossforget.data.container import ImageSource, MultiModalData


def tag_sentences(tags: np.ndarray, tag_names: list[str]) -> list[list[str]]:
    """One text per item: its tag words in vocabulary order, so tag-only datasets feed text encoders too."""
    rows, cols = np.nonzero(tags)
    bounds = np.searchsorted(rows, np.arange(tags.shape[0] + 1))
    names = np.asarray(tag_names, dtype=object)
    return [[" ".join(names[cols[a:b]])] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class TaggedItems:
    """Labelled items whose texts are their tags; subclasses set the attributes and ``dataset_name``."""

    dataset_name: ClassVar[str]
    labels: np.ndarray
    tags: np.ndarray
    tag_names: list[str]
    class_names: list[str]
    images: ImageSource | None
    info: dict

    @cached_property
    def captions(self) -> list[list[str]]:
        return tag_sentences(self.tags, self.tag_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to_multimodal(self) -> MultiModalData:
        return MultiModalData(
            name=self.dataset_name,
            class_names=list(self.class_names),
            labels=self.labels,
            captions=self.captions,
            images=self.images,
            info=dict(self.info),
        )
