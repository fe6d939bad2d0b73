"""The DSPH proxy loss (Huo et al., TCSVT 2024) with learnable class proxies.

Terms, all with weight 1 (SPEC section 3), with ``cos = normalize(codes) @ normalize(P)^T``:
positive ``sum_{y=1}(1 - cos) / #ones`` and negative ``sum_{y=0} relu(cos - m) / #zeros`` for image
and text codes, plus a regulariser ``alpha_reg * mean relu(sim - m)`` over pairs of multi-label
samples that share no label, for image-image, text-text and image-text similarities.
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.losses.base import Batch, Reduction


@lru_cache(maxsize=1)
def _margin_table() -> dict[tuple[int, int], float]:
    text = resources.files("crossforget.losses").joinpath("dsph_margin_table.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {(int(r["bits"]), int(r["k"])): float(r["margin"]) for r in rows}


def dsph_margin(bits: int, num_classes: int) -> float:
    """Margin m = table(bits, ceil(log2 C)), the value the DSPH reference uses."""
    key = (bits, max(1, math.ceil(math.log2(num_classes))))
    table = _margin_table()
    if key not in table:
        raise CrossforgetError(
            f"no DSPH margin for {bits} bits and {num_classes} classes; pass an explicit margin"
        )
    return table[key]


def _proxy_terms(
    codes: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, margin: float, reduction: Reduction
) -> torch.Tensor:
    cos = F.normalize(codes, dim=1) @ F.normalize(proxies, dim=1).T
    positive = labels * (1.0 - cos)
    negative = (1.0 - labels) * F.relu(cos - margin)
    if reduction == "none":
        ones = labels.sum(dim=1).clamp_min(1.0)
        zeros = (1.0 - labels).sum(dim=1).clamp_min(1.0)
        return positive.sum(dim=1) / ones + negative.sum(dim=1) / zeros
    ones = labels.sum().clamp_min(1.0)
    zeros = (1.0 - labels).sum().clamp_min(1.0)
    return positive.sum() / ones + negative.sum() / zeros


def _regulariser(
    image_codes: torch.Tensor, text_codes: torch.Tensor, labels: torch.Tensor, margin: float, weight: float
) -> torch.Tensor:
    multi = labels.sum(dim=1) > 1
    if int(multi.sum()) < 2:
        return image_codes.new_zeros(())
    y = labels[multi]
    disjoint = (y @ y.T) == 0
    if not bool(disjoint.any()):
        return image_codes.new_zeros(())
    img = F.normalize(image_codes[multi], dim=1)
    txt = F.normalize(text_codes[multi], dim=1)
    total = image_codes.new_zeros(())
    for sim in (img @ img.T, txt @ txt.T, img @ txt.T):
        total = total + weight * F.relu(sim[disjoint] - margin).mean()
    return total


class DSPHLoss(nn.Module):
    """Holds the class proxies; ``loss(model, batch)`` is the ModelLoss used by training and Fisher."""

    def __init__(self, num_classes: int, bits: int, margin: float | None = None, alpha_reg: float = 0.8):
        super().__init__()
        self.num_classes = num_classes
        self.bits = bits
        self.margin = dsph_margin(bits, num_classes) if margin is None else float(margin)
        self.alpha_reg = alpha_reg
        self.proxies = nn.Parameter(torch.empty(num_classes, bits))
        nn.init.kaiming_normal_(self.proxies)

    def from_codes(
        self,
        image_codes: torch.Tensor,
        text_codes: torch.Tensor,
        labels: torch.Tensor,
        reduction: Reduction = "mean",
    ) -> torch.Tensor:
        """Per-sample losses (``none``) drop the regulariser: a batch of one sample has no pairs."""
        labels = labels.to(image_codes.dtype)
        loss = _proxy_terms(image_codes, self.proxies, labels, self.margin, reduction)
        loss = loss + _proxy_terms(text_codes, self.proxies, labels, self.margin, reduction)
        if reduction == "mean":
            loss = loss + _regulariser(image_codes, text_codes, labels, self.margin, self.alpha_reg)
        return loss

    def forward(self, model: nn.Module, batch: Batch, reduction: Reduction = "mean") -> torch.Tensor:
        image_codes, text_codes = model(batch)
        return self.from_codes(image_codes, text_codes, batch["labels"], reduction)
