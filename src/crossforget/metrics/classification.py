"""Classification metrics: accuracy on D_f and D_r, and the softmax entropy the MIA uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]; NaN for an empty set (an undefined mean, not a zero)."""
    if targets.numel() == 0:
        return float("nan")
    return float((logits.argmax(dim=1) == targets).double().mean())


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row's softmax, shape (N,); 0 * log 0 counts as 0."""
    log_p = torch.log_softmax(logits.double(), dim=1)
    return -(log_p.exp() * log_p).nan_to_num(0.0).sum(dim=1)


def forget_mask(targets: torch.Tensor, forget_classes: Sequence[int]) -> torch.Tensor:
    """True where the sample's class is one of the forget classes."""
    return torch.isin(targets, torch.as_tensor(list(forget_classes), dtype=targets.dtype))


def forget_retain_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, forget_classes: Sequence[int]
) -> dict:
    """Accuracy on the samples of the forget classes (D_f) and on all others (D_r)."""
    mask = forget_mask(targets, forget_classes)
    return {
        "forget": accuracy(logits[mask], targets[mask]),
        "retain": accuracy(logits[~mask], targets[~mask]),
        "forget_samples": int(mask.sum()),
        "retain_samples": int((~mask).sum()),
    }


def per_class_accuracy(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """Accuracy of each class (NaN for classes without samples), e.g. to see which neighbours suffer."""
    correct = (logits.argmax(dim=1) == targets).double()
    totals = torch.bincount(targets, minlength=num_classes).double()
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, targets, correct)
    return (hits / totals).numpy()
