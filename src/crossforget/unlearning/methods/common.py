"""Pieces PPP and SSD share: Fisher over a seeded sample, and the all-zero-forget-Fisher check."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from crossforget.core import distributed
from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import UnlearningTask


def fisher_over(
    model: nn.Module, task: UnlearningTask, indices: np.ndarray, estimator: str, batch_size: int, what: str
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of the task loss over ``indices`` (deterministic batches, canonical captions).

    Under torchrun each rank takes a block of whole mini-batches and the sums are reduced over ranks.
    """
    sharded = distributed.is_active()
    if sharded:
        indices = distributed.shard_batches(indices, batch_size)
    return diagonal_fisher(
        model,
        task.loss,
        task.batches(indices, batch_size),
        estimator=estimator,
        progress=f"Fisher on {what}",
        sharded=sharded,
    )


def forget_fisher_is_zero(fisher: dict[str, torch.Tensor]) -> bool:
    """True, with a warning, when the forget set carries no gradient signal: the model stays unchanged."""
    if all(not bool(t.any()) for t in fisher.values()):
        warnings.warn(
            "the forget-set Fisher is zero everywhere: the loss has no gradient on the forget "
            "samples, so the model is returned unchanged",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False


# Below this many forget samples a diagonal Fisher is an estimate from a handful of gradients.
MIN_FORGET_SAMPLES = 5


def warn_about_forget_set(task: UnlearningTask) -> None:
    """Warn, naming the counts, when D_f is tiny or every forget sample also carries retained classes
    (then no parameter serves the forget classes alone, and dampening one touches retained ones)."""
    names = ", ".join(task.class_names[c] for c in task.forget_classes)
    size = int(task.train_forget.size)
    if size < MIN_FORGET_SAMPLES:
        warnings.warn(
            f"only {size} training sample(s) carry {names} (fewer than {MIN_FORGET_SAMPLES}): the forget "
            "Fisher rests on too few gradients to be trusted",
            RuntimeWarning,
            stacklevel=3,
        )
    if size == 0:
        return
    labels = task.labels[torch.as_tensor(task.train_forget)].bool().clone()
    labels[:, task.forget_classes] = False
    shared = int(labels.any(dim=1).sum())
    if shared == size:
        warnings.warn(
            f"all {size} training samples carrying {names} also carry retained classes: nothing is "
            "specific to the forget classes, so forgetting them will cost retained classes too",
            RuntimeWarning,
            stacklevel=3,
        )
