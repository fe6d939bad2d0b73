"""Bad Teacher (Chundawat et al., AAAI 2023): distil from an incompetent and a competent teacher.

The student starts as a copy of the original model. On forget samples it is pulled towards a
randomly initialised model of the same architecture (the incompetent teacher: random everywhere,
even where the original started from pretrained weights), on a sample of the
retain set towards the original model (the competent teacher). What "pulled towards" means comes
from the task: KL divergence of the softmax outputs for classifiers, mean squared difference of the
real-valued codes for hashing models (our extension).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.core.progress import progress_bar
from crossforget.core.reproducibility import seed_everything
from crossforget.unlearning.methods.base import (
    OptionsMethod,
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
    require_task_fields,
    require_training_options,
)
from crossforget.unlearning.methods.options import option_range
from crossforget.unlearning.methods.registry import register_method


@dataclass
class BadTeacherOptions:
    """Reference settings: 30% of the retain set and every forget sample, 1 epoch, Adam lr 1e-4, batch 256."""

    retain_fraction: float = field(default=0.3, metadata=option_range(0.0, 1.0))
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 256


def distillation_set(
    task: UnlearningTask, retain_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Every forget sample and a seeded ``retain_fraction`` of the retain set, with a forget flag each."""
    if not 0.0 <= retain_fraction <= 1.0:
        raise CrossforgetError(f"retain_fraction must lie in [0, 1], got {retain_fraction}")
    retain = rng.choice(task.train_retain, size=int(retain_fraction * task.train_retain.size), replace=False)
    indices = np.concatenate([task.train_forget, np.sort(retain)])
    is_forget = np.concatenate([np.ones(task.train_forget.size, bool), np.zeros(retain.size, bool)])
    return indices, is_forget


@register_method(
    "bad_teacher",
    BadTeacherOptions,
    label="Bad Teacher",
    seeding="sample",
    hashing_extension=True,
    flags={"epochs": ()},
)
class BadTeacher(OptionsMethod):
    options: BadTeacherOptions

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        o = self.options
        require_task_fields(task, "outputs", "distillation_loss", "random_model")
        require_training_options(o, "Bad Teacher")
        timer = StageTimer()
        rng = np.random.default_rng(seed)
        with timer.stage("teachers"):
            competent = copy_model(model)
            incompetent = task.random_model(int(rng.integers(2**31 - 1)))
            incompetent.eval()
            student = copy_model(model)
        chosen, flags = distillation_set(task, o.retain_fraction, rng)
        losses: list[float] = []
        with timer.stage("distil"):
            seed_everything(seed)  # dropout and other training-time randomness
            optimiser = torch.optim.Adam(student.parameters(), lr=o.lr)
            student.train()
            with progress_bar("Bad Teacher", total=o.epochs) as bar:
                for _ in range(o.epochs):
                    order = rng.permutation(chosen.size)
                    indices, is_forget = chosen[order], flags[order]
                    running = 0.0
                    for start, batch in zip(
                        range(0, indices.size, o.batch_size), task.batches(indices, o.batch_size), strict=True
                    ):
                        forget = torch.from_numpy(is_forget[start : start + o.batch_size])
                        running += self._step(student, competent, incompetent, task, batch, forget, optimiser)
                    losses.append(running / max(1, -(-indices.size // o.batch_size)))
                    bar.advance(1, status=f"loss {losses[-1]:.4f}")
            student.eval()
        return UnlearnResult(
            student,
            timer.total(),
            {
                "forget_samples": int(task.train_forget.size),
                "retain_samples": int((~flags).sum()),
                "loss_history": losses,
            },
        )

    @staticmethod
    def _step(
        student: nn.Module,
        competent: nn.Module,
        incompetent: nn.Module,
        task: UnlearningTask,
        batch: dict,
        forget: torch.Tensor,
        optimiser: torch.optim.Optimizer,
    ) -> float:
        with torch.no_grad():
            good, bad = task.outputs(competent, batch), task.outputs(incompetent, batch)
            shape = (-1,) + (1,) * (good.dim() - 1)
            target = torch.where(forget.view(shape), bad, good)
        per_sample = task.distillation_loss(task.outputs(student, batch), target)
        loss = per_sample.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return float(loss.detach())
