"""Cross-entropy as a ModelLoss: the classifiers' training loss and the loss PPP and SSD take Fishers of."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.losses.base import Batch, Reduction


class CrossEntropyLoss:
    """``loss(model, batch, reduction)`` with batch = {"images": (B,3,H,W), "labels": (B,) class indices}.

    ``reduction="none"`` gives B per-sample losses, each equal to the loss of that sample alone (the
    model must be in eval mode for this to hold with BatchNorm, which the Fisher code ensures).
    """

    def __call__(self, model: nn.Module, batch: Batch, reduction: Reduction = "mean") -> torch.Tensor:
        if reduction not in ("mean", "none"):
            raise CrossforgetError(f"unknown reduction {reduction!r}; use 'mean' or 'none'")
        labels = batch["labels"]
        if labels.dim() != 1 or labels.is_floating_point():
            raise CrossforgetError("cross-entropy needs class indices of shape (B,) as batch['labels']")
        return F.cross_entropy(model(batch["images"]), labels, reduction=reduction)


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(teacher || student) of the softmax outputs at temperature 1, shape (B,).

    This is Bad Teacher's distillation loss (Chundawat et al., AAAI 2023). Its reference code averages
    over classes as well (``F.kl_div`` with reduction "mean"), a constant factor 1/C that Adam's update
    is insensitive to; per sample, summing over classes is the KL divergence itself.
    """
    teacher = F.log_softmax(teacher_logits.detach(), dim=1)
    student = F.log_softmax(student_logits, dim=1)
    return (teacher.exp() * (teacher - student)).sum(dim=1)
