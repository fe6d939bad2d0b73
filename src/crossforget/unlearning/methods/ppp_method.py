"""PPP (prior-prototype guided partitioned dampening), Algorithm 1 of the paper, end to end."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.guard import (
    GuardOutcome,
    GuardSettings,
    ProbeScores,
    RetentionProbe,
    check_budget,
    guarded_search,
)
from crossforget.unlearning.methods.base import (
    OptionsMethod,
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
    extra_streams,
    forget_sample,
    sample_indices,
)
from crossforget.unlearning.methods.common import fisher_over, forget_fisher_is_zero, warn_about_forget_set
from crossforget.unlearning.methods.options import option_range
from crossforget.unlearning.methods.registry import register_method
from crossforget.unlearning.methods.search_space import Dimension
from crossforget.unlearning.ppp import DEFAULT_EPS, TensorPlan, Thresholds, apply_plan, dampening_plan
from crossforget.unlearning.prototypes import neighbour_structure


@dataclass
class PPPOptions:
    """Hyperparameters (paper symbols) and sample budgets.

    k: neighbours per forget class; alpha, tau: region thresholds (Eq. 5); lam, lam_max: base
    dampening (Eq. 6); eps: Eq. 6's stabiliser; core_sign: -1 as in Eq. 7, +1 for the ablation.
    Budgets: forget 80 as in the paper; neighbour and retain budgets bound the cost of the two extra
    Fisher passes (None = the whole subset).
    retain_set: which retained samples give I_r in Eqs. 5-6. "rest" = D_r \\ D_n, the paper's three
    disjoint subsets; "all" = all of D_r, neighbours included, so that parameters the neighbour
    classes need are protected by the S test too (with "rest", a frequent neighbour such as person
    drops out of I_r and its parameters are dampened).
    estimator: "per_sample" (Eq. 4 as written) by default: the batch-mean estimator lets the DSPH
    pairwise regulariser into a mixed multi-class forget batch and collapses the model
    (docs/robust_forgetting.md).
    forget_fisher: how a multi-class request forms I_f. "per_class" (default): one Fisher per forget
    class over the forget samples carrying it, combined by the elementwise maximum, so an entry is
    selected when it serves any one forget class as much as a single-class request would need, and the
    selection does not depend on how the forget sample mixes the classes; "pooled": one Fisher over the
    whole forget sample (the paper's D_f), where an entry serving one of k classes has its I_f diluted
    about k-fold. Both are identical for a single class.
    Guard: with ``retain_budget`` (points) set, alpha is only the start of a search on held-out items
    (``task.probe``) for a candidate whose retained score drops by at most the budget and whose forget
    score falls within ``forget_tolerance`` of the original's gap to the floor, in at most
    ``guard_steps`` probe evaluations; None applies alpha unchecked. On a multi-class request with the
    per-class forget Fisher, a search that ends kept but not forgotten lowers the threshold of each
    unforgotten class on its own (an entry leaves S when it serves any forget class more than that
    class's threshold allows), in at most ``guard_class_steps`` more evaluations. ``rounds``: when the
    guarded result keeps but does not forget, PPP starts again from it, with the three Fishers
    re-estimated at the dampened weights and the budget still measured from the input model, up to
    ``rounds`` rounds in all, as long as each round forgets more (1 = the paper's single pass).
    alpha 30, the guard's settings, the refinement, the rounds and the estimator were chosen on the
    validation split over the request panel (README, "How the PPP defaults were chosen"; the rounds
    also on the classification probe), never on the test queries.
    """

    k: int = 3
    alpha: float = field(default=30.0, metadata=option_range(0))
    tau: float = field(default=1.0, metadata=option_range(0))
    lam: float = field(default=1.0, metadata=option_range(0))
    lam_max: float = field(default=1.0, metadata=option_range(0))
    eps: float = field(default=DEFAULT_EPS, metadata=option_range(0))
    core_sign: float = field(default=-1.0, metadata=option_range(-1, 1))
    estimator: Literal["batch", "per_sample"] = "per_sample"
    prototype_modality: Literal["both", "image", "text"] = "both"
    forget_samples: int | None = 80
    neighbour_samples: int | None = 400
    retain_samples: int | None = 800
    batch_size: int = 32
    retain_set: Literal["rest", "all"] = "all"
    forget_fisher: Literal["per_class", "pooled"] = "per_class"
    retain_budget: float | None = field(default=1.0, metadata=option_range(0))
    forget_tolerance: float = field(default=0.1, metadata=option_range(0, 1))
    guard_steps: int = field(default=8, metadata=option_range(1))
    guard_class_steps: int = field(default=8, metadata=option_range(0))
    rounds: int = field(default=3, metadata=option_range(1))


# The guard never goes below alpha = 1: there an entry matters more to the retained data than to the
# forget set, and dampening it is damage, not forgetting.
MIN_ALPHA = 1.0


# The paper's tuned hyperparameters; lam_max is uniform on (0, 1]: the lower end stays just above 0,
# where Eq. 6 would zero every B weight.
SEARCH_SPACE = {
    "alpha": Dimension("log", 1.0, 1000.0),
    "tau": Dimension("log", 0.1, 100.0),
    "lam": Dimension("log", 0.1, 1e4),
    "lam_max": Dimension("float", 1e-3, 1.0),
    "k": Dimension("int", 1, 8),
}
FLAGS = {
    "forget_samples": (),
    "alpha": (),
    "tau": (),
    "lam": ("--lambda",),
    "lam_max": ("--lambda-max",),
    "k": (),
    "estimator": (),
}


@register_method("ppp", PPPOptions, label="PPP", seeding="sample", search_space=SEARCH_SPACE, flags=FLAGS)
class PPP(OptionsMethod):
    options: PPPOptions

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        o = self.options
        if o.retain_budget is not None:
            check_budget(o.retain_budget)
        timer = StageTimer()
        clone, plans, diagnostics = self.plan(model, task, seed, timer)
        if plans is None:
            return UnlearnResult(clone, timer.total(), diagnostics)
        if o.retain_budget is None or task.probe is None:
            if o.retain_budget is not None:
                diagnostics["guard"] = {"skipped": "the task offers no held-out probe"}
                warnings.warn(
                    f"forgetting guard skipped: no held-out item carries the forget classes, so alpha "
                    f"{o.alpha:g} is applied unchecked; check the result with `crossforget evaluate`",
                    RuntimeWarning,
                    stacklevel=2,
                )
            with timer.stage("dampen"):
                sizes = apply_plan(clone, model, plans, o.alpha)
        else:
            clone, sizes = self._rounds(clone, model, plans, task, seed, timer, diagnostics)
        totals = {r: sum(s[r] for s in sizes.values()) for r in ("S", "B", "C")}
        diagnostics.update(
            regions=totals, regions_per_tensor={k: v for k, v in sizes.items() if v["S"] < sum(v.values())}
        )
        return UnlearnResult(clone, timer.total(), diagnostics)

    def plan(
        self, model: nn.Module, task: UnlearningTask, seed: int, timer: StageTimer, warn: bool = True
    ) -> tuple[nn.Module, dict[str, TensorPlan] | None, dict]:
        """Prototypes, samples, the three Fishers and the alpha-free part of Eqs. 5-7.

        Returns an undampened copy of ``model``, the per-tensor plans (None when the forget Fisher is
        zero: nothing to do) and the diagnostics so far; any alpha can then be applied cheaply.
        """
        o = self.options
        if warn:
            warn_about_forget_set(task)
        clone = copy_model(model)
        with timer.stage("prototypes"):
            prototypes = task.prototypes(o.prototype_modality)
            info = neighbour_structure(prototypes, task.forget_classes, o.k)
        retain_labels = task.labels[task.train_retain].numpy().astype(bool)
        in_neighbour = retain_labels[:, info.neighbours].any(axis=1)
        # The forget sample is the one every sampled method draws at this seed (paired with SSD);
        # the neighbour and retain samples come from streams of their own.
        forget = forget_sample(task, o.forget_samples, seed)
        neighbour_stream, retain_stream = extra_streams(seed, 2)
        neighbour = sample_indices(
            task.train_retain[in_neighbour], o.neighbour_samples, neighbour_stream, "neighbour"
        )
        if o.retain_set not in ("rest", "all"):
            raise CrossforgetError(f"retain_set must be 'rest' or 'all', got {o.retain_set!r}")
        pool = task.train_retain[~in_neighbour] if o.retain_set == "rest" else task.train_retain
        rest = sample_indices(pool, o.retain_samples, retain_stream, "retained")
        with timer.stage("fisher_forget"):
            fisher_f, per_class, class_fishers = self._forget_fisher(clone, task, forget)
        with timer.stage("fisher_neighbour"):
            fisher_n = fisher_over(clone, task, neighbour, o.estimator, o.batch_size, "D_n")
        with timer.stage("fisher_retain"):
            fisher_r = fisher_over(clone, task, rest, o.estimator, o.batch_size, "retained")
        names = task.class_names
        diagnostics = {
            "neighbours": [names[c] for c in info.neighbours],
            "neighbours_per_forget": {names[f]: [names[c] for c in cs] for f, cs in info.per_forget.items()},
            "gamma": info.gamma,
            "mu_n": info.mu_n,
            "mu_rest": info.mu_rest,
            "forget_fisher": o.forget_fisher,
            "samples": {
                "forget": int(forget.size),
                "forget_per_class": per_class,
                "neighbour": int(neighbour.size),
                "retain": int(rest.size),
            },
            "available": {
                "forget": int(task.train_forget.size),
                "neighbour": int(in_neighbour.sum()),
                "retain": int(pool.size),
            },
        }
        if forget_fisher_is_zero(fisher_f):
            return clone, None, diagnostics
        with timer.stage("dampen"):
            plans = dampening_plan(
                fisher_f,
                fisher_n,
                fisher_r,
                o.tau,
                o.lam,
                o.lam_max,
                info.gamma,
                o.eps,
                o.core_sign,
                class_fishers,
            )
        return clone, plans, diagnostics

    def _forget_fisher(
        self, clone: nn.Module, task: UnlearningTask, forget: np.ndarray
    ) -> tuple[dict[str, torch.Tensor], dict[str, int], list[dict[str, torch.Tensor]]]:
        """I_f over the forget sample: pooled, or the elementwise maximum of one Fisher per forget class
        (over the samples of the paired forget sample that carry it); also the samples per class, and
        the per-class Fishers in request order when every forget class has samples (else [])."""
        o = self.options
        if o.forget_fisher not in ("per_class", "pooled"):
            raise CrossforgetError(f"forget_fisher must be 'per_class' or 'pooled', got {o.forget_fisher!r}")
        carries = task.labels[torch.as_tensor(forget)][:, task.forget_classes].bool().numpy()
        names = [task.class_names[c] for c in task.forget_classes]
        counts = {name: int(column.sum()) for name, column in zip(names, carries.T, strict=True)}
        groups = {name: forget[column] for name, column in zip(names, carries.T, strict=True) if column.any()}
        if o.forget_fisher == "pooled" or len(groups) < 2:
            return fisher_over(clone, task, forget, o.estimator, o.batch_size, "D_f"), counts, []
        fishers = [
            fisher_over(clone, task, group, o.estimator, o.batch_size, f"D_f ({name})")
            for name, group in groups.items()
        ]
        pooled = {key: torch.stack([f[key] for f in fishers]).amax(dim=0) for key in fishers[0]}
        return pooled, counts, fishers if len(groups) == len(names) else []

    def _rounds(
        self,
        clone: nn.Module,
        model: nn.Module,
        plans: dict[str, TensorPlan],
        task: UnlearningTask,
        seed: int,
        timer: StageTimer,
        diagnostics: dict,
    ) -> tuple[nn.Module, dict[str, dict[str, int]]]:
        """The guarded dampening, repeated from its own result while it keeps but does not forget.

        Why a further round helps: the empirical Fisher of a forget sample the model fits confidently
        is small (its loss gradients vanish), so I_f under-ranks the entries that carry the class; once
        a first round has weakened the class, its gradients grow and the re-estimated ratios single
        those entries out. Every round uses the same seeded samples and the input model's probe scores,
        so the retained budget is cumulative; a round is kept only if it stays within budget and
        forgets more than the best so far. Returns the accepted model and its region sizes.
        """
        o, probe = self.options, task.probe
        with timer.stage("guard"):
            outcome, sizes = self._guarded(clone, model, plans, probe, None)
        history, best = [outcome], (clone, sizes, outcome)
        while len(history) < o.rounds and not outcome.met and outcome.accepted.keeps:
            source = best[0]
            candidate, plans, _ = self.plan(source, task, seed, timer, warn=False)
            if plans is None:
                break
            with timer.stage("guard"):
                outcome, sizes = self._guarded(candidate, source, plans, probe, history[0].original)
            history.append(outcome)
            if not (outcome.accepted.keeps and outcome.accepted.forget < best[2].accepted.forget):
                break
            best = (candidate, sizes, outcome)
        clone, sizes, outcome = best
        settings = self._settings()
        record = outcome.diagnostics(settings, probe)
        if len(history) > 1:
            record.update(
                round=history.index(outcome) + 1,
                rounds=[_round_summary(h) for h in history],
                earlier_rounds=[h.diagnostics(settings, probe) for h in history if h is not outcome],
            )
        diagnostics["guard"] = record
        if not outcome.met:
            where = f" (round {history.index(outcome) + 1} of {len(history)})" if len(history) > 1 else ""
            warnings.warn(f"forgetting guard{where}: {outcome.message}", RuntimeWarning, stacklevel=3)
        return clone, sizes

    def _settings(self) -> GuardSettings:
        o = self.options
        return GuardSettings(
            o.retain_budget, o.forget_tolerance, o.guard_steps, class_steps=o.guard_class_steps
        )

    def _guarded(
        self,
        clone: nn.Module,
        model: nn.Module,
        plans: dict[str, TensorPlan],
        probe: RetentionProbe,
        baseline: ProbeScores | None,
    ) -> tuple[GuardOutcome, dict[str, dict[str, int]]]:
        """Search alpha with the two-sided guard from the configured alpha; leave ``clone`` dampened at
        the accepted value. ``clone`` is still the undampened copy when the guard scores the original;
        ``baseline``: the scores to measure against instead (a later round's)."""
        o = self.options

        def build(alpha: Thresholds) -> tuple[nn.Module, int]:
            sizes = apply_plan(clone, model, plans, alpha)
            return clone, sum(v["B"] + v["C"] for v in sizes.values())

        per_class = all(p.class_critical is not None for p in plans.values())
        finite = [p.critical[torch.isfinite(p.critical)] for p in plans.values()]
        highest = max((float(c.max()) for c in finite if c.numel()), default=o.alpha)
        outcome = guarded_search(
            build,
            probe,
            clone,
            o.alpha,
            (MIN_ALPHA, highest),
            self._settings(),
            build if per_class else None,
            baseline=baseline,
            warn=False,
        )
        return outcome, apply_plan(clone, model, plans, outcome.alphas or outcome.alpha)


def _round_summary(outcome: GuardOutcome) -> dict:
    """One round of the guarded dampening in a line: its accepted threshold(s) and probe scores."""
    step = outcome.accepted
    summary = {
        "alpha": outcome.alpha,
        "met": outcome.met,
        "retain_drop": step.retain_drop,
        "forget": step.forget,
        "dampened": step.dampened,
    }
    if outcome.alphas is not None:
        summary["alphas"] = list(outcome.alphas)
    return summary
