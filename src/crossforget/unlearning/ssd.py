"""Selective Synaptic Dampening (Foster et al., AAAI 2024): the update rule of the official code.

Per parameter entry, with I_f the forget-set Fisher and I_D the Fisher over the full training set:
selected = I_f > alpha * I_D; w = min(lam * I_D / I_f, 1); theta <- w * theta where selected.
There is no epsilon: a selected entry has I_f > alpha * I_D >= 0, so the division is safe.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.fisher import aligned_parameters


def ssd_dampen(
    params: Mapping[str, torch.Tensor] | nn.Module,
    fisher_forget: Mapping[str, torch.Tensor],
    fisher_full: Mapping[str, torch.Tensor],
    alpha: float = 10.0,
    lam: float = 1.0,
) -> dict[str, int]:
    """Dampen ``params`` in place by the SSD rule; return the number of selected entries per tensor.

    ``params``: a name -> tensor mapping or a module (its named parameters). Only the tensors named by
    the Fisher dicts are touched. Defaults are the reference scripts' (alpha 10 for ResNet-18, 5 for ViT).
    """
    if alpha < 0 or lam < 0:
        raise CrossforgetError(f"SSD needs alpha >= 0 and lambda >= 0, got alpha={alpha}, lambda={lam}")
    targets = aligned_parameters(params, {"forget Fisher": fisher_forget, "full Fisher": fisher_full})
    selected_counts: dict[str, int] = {}
    with torch.no_grad():
        for name, param in targets.items():
            forget = fisher_forget[name].to(param.device)
            full = fisher_full[name].to(param.device)
            selected = forget > alpha * full
            weight = torch.where(selected, (lam * full / forget).clamp(max=1.0), torch.ones_like(forget))
            param.mul_(weight.to(param.dtype))
            selected_counts[name] = int(selected.sum())
    return selected_counts
