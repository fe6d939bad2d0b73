"""The forgetting guard's probe for classifiers: top-1 accuracy on a fixed sample of training images.

Why training images: single-label data has only a train and a test split, and the test split is what
Table 1 reports, so the guard must never look at it. The guard does not need unseen items either: it
compares two models (the Original and a dampened candidate) on the same items and acts on the drop,
and on training images the Original's accuracy is high, so a drop caused by dampening shows clearly.
Retained score: accuracy on up to ``retain_images`` training images of the retained classes; forget
score: accuracy on up to ``forget_images`` training images of the forget classes (these may overlap
PPP's own forget sample, which the probe cannot know); floor 0, since a model that never learnt a
class never predicts it. The sample is fixed by ``seed``, so every method seed of a request is checked
on the same images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.guard import ProbeScores, RetentionProbe

Logits = Callable[[nn.Module, np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class ClassificationProbeSizes:
    """How many training images the probe scores (cost: one forward pass per image and candidate)."""

    forget_images: int = 100
    retain_images: int = 300

    def __post_init__(self) -> None:
        if self.forget_images < 1 or self.retain_images < 1:
            raise CrossforgetError(
                "the classification probe needs at least one forget and one retained image"
            )


def classification_probe(
    logits: Logits,
    targets: np.ndarray,
    train: np.ndarray,
    forget_classes: Sequence[int],
    sizes: ClassificationProbeSizes | None = None,
    seed: int = 0,
) -> RetentionProbe:
    """The probe for one request. ``logits(model, indices)`` returns (n, C) outputs in eval mode;
    ``targets`` holds every image's class, ``train`` the training indices (never the test split)."""
    sizes = sizes or ClassificationProbeSizes()
    train = np.asarray(train, dtype=np.int64)
    is_forget = np.isin(targets[train], list(forget_classes))
    if not is_forget.any() or is_forget.all():
        raise CrossforgetError(
            "the classification probe needs training images of both the forget and the retained classes"
        )
    rng = np.random.default_rng(seed)
    forget = _sample(rng, train[is_forget], sizes.forget_images)
    retain = _sample(rng, train[~is_forget], sizes.retain_images)
    items = np.concatenate([forget, retain])
    truth = torch.from_numpy(np.asarray(targets[items], dtype=np.int64))
    forget_rows = torch.arange(items.size) < forget.size
    # Each forget class scored alone, for the guard's per-class refinement (two or more classes, each
    # with probe images).
    class_rows = [forget_rows & (truth == c) for c in forget_classes]
    if len(class_rows) < 2 or not all(bool(rows.any()) for rows in class_rows):
        class_rows = []

    def score(model: nn.Module) -> ProbeScores:
        correct = (logits(model, items).argmax(dim=1) == truth).float()
        return ProbeScores(
            retain=float(correct[~forget_rows].mean()),
            forget=float(correct[forget_rows].mean()),
            per_class=tuple(float(correct[rows].mean()) for rows in class_rows),
        )

    description = (
        f"top-1 accuracy on {forget.size} forget and {retain.size} retained training images "
        f"(seed {seed}; the test split is never probed)"
    )
    return RetentionProbe(score, 0.0, description, class_floors=(0.0,) * len(class_rows))


def _sample(rng: np.random.Generator, items: np.ndarray, size: int) -> np.ndarray:
    if items.size <= size:
        return np.sort(items)
    return np.sort(rng.choice(items, size=size, replace=False))
