"""PPP partitioned dampening: regions (Eq. 5), base factor (Eq. 6), hierarchical update (Eq. 7).

I_f, I_n, I_r are the diagonal Fishers over the forget set D_f, the neighbour set D_n and the rest of the
retain set D_r \\ D_n. Region codes: 0 = S (shared, untouched), 1 = B (buffer), 2 = C (core).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.fisher import aligned_parameters

SHARED, BUFFER, CORE = 0, 1, 2
REGION_NAMES: dict[int, str] = {SHARED: "S", BUFFER: "B", CORE: "C"}

# Eq. 6's epsilon only keeps w finite where it is never applied: an entry outside S has
# I_f > alpha * I_r >= 0, so I_f > 0 there. It must sit far below the Fisher values of deep models
# (squared gradients of 1e-8 are 1e-16), or it would bias w; 1e-30 is still a normal float32.
DEFAULT_EPS = 1e-30


def _work_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.promote_types(tensor.dtype, torch.float32)


def partition_tensor(
    fisher_f: torch.Tensor, fisher_n: torch.Tensor, fisher_r: torch.Tensor, alpha: float, tau: float
) -> torch.Tensor:
    """Eq. 5 for one tensor: S if I_f <= alpha * I_r; else B if I_f < tau * I_n; else C (int8 codes)."""
    shared = fisher_f <= alpha * fisher_r
    buffer = ~shared & (fisher_f < tau * fisher_n)
    regions = torch.full(fisher_f.shape, CORE, dtype=torch.int8, device=fisher_f.device)
    regions[buffer] = BUFFER
    regions[shared] = SHARED
    return regions


def partition(
    fisher_f: Mapping[str, torch.Tensor],
    fisher_n: Mapping[str, torch.Tensor],
    fisher_r: Mapping[str, torch.Tensor],
    alpha: float,
    tau: float,
) -> dict[str, torch.Tensor]:
    """Eq. 5 for every tensor: name -> int8 tensor with 0 = S, 1 = B, 2 = C."""
    _check_thresholds(alpha, tau)
    aligned_parameters(fisher_f, _named(fisher_f, fisher_n, fisher_r))
    return {
        name: partition_tensor(fisher_f[name], fisher_n[name], fisher_r[name], alpha, tau)
        for name in fisher_f
    }


def dampening_factor(
    fisher_f: torch.Tensor, fisher_r: torch.Tensor, lam: float, lam_max: float, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Eq. 6: w = min((lam * I_r / (I_f + eps))^2, lam_max), elementwise (an overflow to inf is capped)."""
    dtype = _work_dtype(fisher_f)
    ratio = lam * fisher_r.to(dtype) / (fisher_f.to(dtype) + eps)
    return ratio.square().clamp(max=lam_max)


Thresholds = float | Sequence[float]  # one alpha, or one per forget class (request order)


@dataclass
class TensorPlan:
    """What Eqs. 5-7 do to one tensor, for any alpha: ``critical`` is the smallest alpha at which an
    entry stays in S (I_f / I_r; 0 where I_f = 0, inf where only I_f is positive); ``factor`` is the
    multiplier it gets outside S (w in B, core_sign * gamma * w in C); ``core`` marks C (I_f >= tau * I_n).
    ``class_critical``: on a multi-class request, each forget class's own I_f^c / I_r (stacked on dim
    0, request order), so that each class can have its own threshold; None otherwise. ``critical`` is
    their maximum, so one common alpha selects the same entries either way."""

    critical: torch.Tensor
    factor: torch.Tensor
    core: torch.Tensor
    class_critical: torch.Tensor | None = None

    def keeps(self, alpha: Thresholds) -> torch.Tensor:
        """Which entries stay in S: I_f / I_r <= alpha; with one alpha per class, an entry leaves S when
        it serves any forget class c more than that class's threshold allows (I_f^c > alpha_c I_r)."""
        if isinstance(alpha, int | float):
            return self.critical <= alpha
        if self.class_critical is None:
            raise CrossforgetError("per-class thresholds need a plan built from per-class forget Fishers")
        if len(alpha) != self.class_critical.shape[0]:
            raise CrossforgetError(
                f"got {len(alpha)} thresholds for {self.class_critical.shape[0]} forget classes"
            )
        shape = (-1,) + (1,) * self.critical.dim()
        thresholds = torch.tensor(list(alpha), dtype=self.critical.dtype, device=self.critical.device)
        return (self.class_critical <= thresholds.view(shape)).all(dim=0)

    def regions(self, alpha: Thresholds) -> torch.Tensor:
        """Eq. 5's int8 codes at ``alpha``."""
        codes = torch.where(self.core, CORE, BUFFER).to(torch.int8)
        return torch.where(self.keeps(alpha), torch.zeros_like(codes), codes)


def dampening_plan(
    fisher_f: Mapping[str, torch.Tensor],
    fisher_n: Mapping[str, torch.Tensor],
    fisher_r: Mapping[str, torch.Tensor],
    tau: float,
    lam: float,
    lam_max: float,
    gamma: float,
    eps: float = DEFAULT_EPS,
    core_sign: float = -1.0,
    class_fishers: Sequence[Mapping[str, torch.Tensor]] = (),
) -> dict[str, TensorPlan]:
    """Everything of Eqs. 5-7 that does not depend on alpha, so a threshold search costs one pass.

    ``class_fishers``: the per-class forget Fishers of a multi-class request (``fisher_f`` is their
    elementwise maximum); with two or more, each plan keeps every class's critical alpha (memory: one
    float per parameter and forget class)."""
    _check_thresholds(0.0, tau)
    if lam < 0 or lam_max < 0 or gamma < 0 or eps < 0:
        raise CrossforgetError(
            f"PPP needs lambda, lambda_max, gamma, eps >= 0; got {lam}, {lam_max}, {gamma}, {eps}"
        )
    if core_sign not in (-1.0, 1.0):
        raise CrossforgetError(f"core_sign must be -1 (paper) or +1 (ablation), got {core_sign}")
    plans = {}
    for name in fisher_f:
        dtype, device = _work_dtype(fisher_f[name]), fisher_f[name].device
        f, n, r = (fisher[name].to(device, dtype) for fisher in (fisher_f, fisher_n, fisher_r))
        critical = _critical(f, r)
        core = ~(f < tau * n)
        w = dampening_factor(f, r, lam, lam_max, eps)
        per_class = (
            torch.stack([_critical(fisher[name].to(device, dtype), r) for fisher in class_fishers])
            if len(class_fishers) >= 2
            else None
        )
        plans[name] = TensorPlan(critical, torch.where(core, core_sign * gamma * w, w), core, per_class)
    return plans


def _critical(fisher_f: torch.Tensor, fisher_r: torch.Tensor) -> torch.Tensor:
    """I_f / I_r, with 0 where I_f = 0 (I_f > 0 with I_r = 0 gives inf)."""
    return torch.where(fisher_f > 0, fisher_f / fisher_r, torch.zeros_like(fisher_f))


def apply_plan(
    target: Mapping[str, torch.Tensor] | nn.Module,
    source: Mapping[str, torch.Tensor] | nn.Module,
    plans: Mapping[str, TensorPlan],
    alpha: Thresholds,
) -> dict[str, dict[str, int]]:
    """target <- Eq. 7 applied to source at ``alpha`` (the two may be the same); per-tensor region sizes.

    ``alpha``: one threshold, or one per forget class for plans that record owners. Only tensors named
    by ``plans`` are written; ``target`` and ``source`` must hold them all.
    """
    for value in [alpha] if isinstance(alpha, int | float) else alpha:
        _check_thresholds(value, 0.0)
    into = dict(target.named_parameters()) if isinstance(target, nn.Module) else dict(target)
    origin = dict(source.named_parameters()) if isinstance(source, nn.Module) else dict(source)
    sizes: dict[str, dict[str, int]] = {}
    with torch.no_grad():
        for name, plan in plans.items():
            param = into[name]
            keep = plan.keeps(alpha).to(param.device)
            factor = torch.where(keep, torch.ones_like(plan.factor), plan.factor).to(param.device)
            param.copy_(origin[name].to(param.device) * factor.to(param.dtype))
            sizes[name] = _counts(plan.regions(alpha))
    return sizes


def ppp_dampen(
    params: Mapping[str, torch.Tensor] | nn.Module,
    fisher_f: Mapping[str, torch.Tensor],
    fisher_n: Mapping[str, torch.Tensor],
    fisher_r: Mapping[str, torch.Tensor],
    alpha: float,
    tau: float,
    lam: float,
    lam_max: float,
    gamma: float,
    eps: float = DEFAULT_EPS,
    core_sign: float = -1.0,
) -> dict[str, dict[str, int]]:
    """Apply Eq. 7 in place; return per-tensor region sizes ``{"S": n, "B": n, "C": n}``.

    B: theta <- w * theta; C: theta <- core_sign * gamma * w * theta; S: unchanged. ``core_sign=-1`` is the
    sign inversion of Eq. 7 and Algorithm 1 line 11 (intentional); ``+1`` is the no-inversion ablation.
    Only tensors named by the Fisher dicts are touched. An all-zero forget Fisher puts every entry in S
    (I_f = 0 <= alpha * I_r), so nothing changes; the caller decides whether to warn.
    """
    _check_thresholds(alpha, tau)
    targets = aligned_parameters(params, _named(fisher_f, fisher_n, fisher_r))
    plans = dampening_plan(fisher_f, fisher_n, fisher_r, tau, lam, lam_max, gamma, eps, core_sign)
    return apply_plan(targets, targets, plans, alpha)


def region_sizes(regions: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Total number of entries in S, B and C over all tensors of a partition (for diagnostics)."""
    totals = {label: 0 for label in REGION_NAMES.values()}
    for codes in regions.values():
        for label, count in _counts(codes).items():
            totals[label] += count
    return totals


def _counts(codes: torch.Tensor) -> dict[str, int]:
    return {label: int((codes == code).sum()) for code, label in REGION_NAMES.items()}


def _check_thresholds(alpha: float, tau: float) -> None:
    if alpha < 0 or tau < 0:
        raise CrossforgetError(f"PPP needs alpha >= 0 and tau >= 0, got alpha={alpha}, tau={tau}")


def _named(
    fisher_f: Mapping[str, torch.Tensor],
    fisher_n: Mapping[str, torch.Tensor],
    fisher_r: Mapping[str, torch.Tensor],
) -> dict[str, Mapping[str, torch.Tensor]]:
    return {"forget Fisher I_f": fisher_f, "neighbour Fisher I_n": fisher_n, "retain Fisher I_r": fisher_r}
