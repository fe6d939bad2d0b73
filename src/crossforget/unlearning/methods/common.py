"""Pieces PPP and SSD share: Fisher over a seeded sample, and the all-zero-forget-Fisher check."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import UnlearningTask


def fisher_over(
    model: nn.Module, task: UnlearningTask, indices: np.ndarray, estimator: str, batch_size: int, what: str
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of the task loss over ``indices`` (deterministic batches, canonical captions)."""
    return diagonal_fisher(
        model, task.loss, task.batches(indices, batch_size), estimator=estimator, progress=f"Fisher on {what}"
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
