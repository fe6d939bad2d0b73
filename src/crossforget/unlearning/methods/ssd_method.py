"""SSD (Foster et al., AAAI 2024) as a method: forget Fisher vs full-training-set Fisher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from crossforget.unlearning.methods.base import (
    LEGACY_STORED_FISHER,
    OptionsMethod,
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
    forget_sample,
)
from crossforget.unlearning.methods.common import fisher_over, forget_fisher_is_zero, warn_about_forget_set
from crossforget.unlearning.methods.options import option_range
from crossforget.unlearning.methods.registry import register_method
from crossforget.unlearning.methods.search_space import Dimension
from crossforget.unlearning.ssd import ssd_dampen


@dataclass
class SSDOptions:
    """Reference defaults: alpha (selection) 10, lambda (dampening) 1, batch-mean Fisher estimator.

    ``forget_samples``: size of the forget sample (80, as PPP, for a fair comparison; None = all of D_f).
    ``use_stored_fisher``: take the full-data Fisher from the checkpoint when it was stored at training
    with this estimator and batch size over the whole training set (otherwise it is computed, and the
    diagnostics say why).
    """

    alpha: float = field(default=10.0, metadata=option_range(0))
    lam: float = field(default=1.0, metadata=option_range(0))
    forget_samples: int | None = 80
    estimator: Literal["batch", "per_sample"] = "batch"
    batch_size: int = 32
    use_stored_fisher: bool = True


@register_method(
    "ssd",
    SSDOptions,
    label="SSD",
    seeding="sample",
    search_space={"alpha": Dimension("log", 1.0, 1000.0), "lam": Dimension("log", 0.1, 10.0)},
    flags={"forget_samples": (), "alpha": (), "lam": ("--lambda",), "estimator": ()},
)
class SSD(OptionsMethod):
    options: SSDOptions

    def _why_not_stored(self, task: UnlearningTask) -> str | None:
        """None when the stored I_D is the one this run would compute, else why it is computed instead.

        A Fisher from another estimator or batch size is a different quantity (the batch estimator
        averages squared batch-mean gradients, so its scale shrinks with the batch size), and mixing
        it with this run's I_f changes which parameters pass the alpha test.
        """
        o = self.options
        if not o.use_stored_fisher:
            return "use_stored_fisher is false"
        if task.stored_fisher is None:
            return "the checkpoint stores no full-data Fisher"
        info = task.stored_fisher_info or LEGACY_STORED_FISHER
        stored = f"{info['estimator']}@{info['batch_size']}"
        requested = f"{o.estimator}@{o.batch_size}"
        if stored != requested:
            return f"the stored one is {stored}, the request {requested}"
        samples = info.get("samples")
        if samples is not None and int(samples) != task.train_all.size:
            return f"the stored one covers {samples} samples, D has {task.train_all.size}"
        return None

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        o = self.options
        warn_about_forget_set(task)
        timer = StageTimer()
        clone = copy_model(model)
        forget = forget_sample(task, o.forget_samples, seed)
        with timer.stage("fisher_forget"):
            fisher_f = fisher_over(clone, task, forget, o.estimator, o.batch_size, "D_f")
        reason = self._why_not_stored(task)
        with timer.stage("fisher_full"):
            fisher_d = (
                task.stored_fisher
                if reason is None
                else fisher_over(clone, task, task.train_all, o.estimator, o.batch_size, "D")
            )
        diagnostics = {
            "forget_samples": int(forget.size),
            "full_fisher": "stored" if reason is None else "computed",
            "full_samples": int(task.train_all.size),
            "stored_fisher": task.stored_fisher_info,
        }
        if reason is not None:
            diagnostics["full_fisher_reason"] = reason
        if forget_fisher_is_zero(fisher_f):
            return UnlearnResult(clone, timer.total(), {**diagnostics, "selected": 0})
        with timer.stage("dampen"):
            selected = ssd_dampen(clone, fisher_f, fisher_d, alpha=o.alpha, lam=o.lam)
        total = sum(p.numel() for p in clone.parameters())
        diagnostics.update(
            selected=int(sum(selected.values())),
            parameters=total,
            selected_per_tensor={k: v for k, v in selected.items() if v},
        )
        return UnlearnResult(clone, timer.total(), diagnostics)
