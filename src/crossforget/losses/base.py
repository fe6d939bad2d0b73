"""The loss protocol shared by training and Fisher estimation."""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import nn

Batch = dict[str, torch.Tensor]
Reduction = Literal["mean", "none"]


class ModelLoss(Protocol):
    """``loss(model, batch, reduction)``.

    ``reduction="mean"``: the training loss of the batch (a scalar), as the optimiser sees it.
    ``reduction="none"``: a vector of B losses, entry i equal to the loss of a batch holding sample i
    alone, so that its gradient is the per-sample gradient of Eq. 4.
    """

    def __call__(self, model: nn.Module, batch: Batch, reduction: Reduction = "mean") -> torch.Tensor: ...
