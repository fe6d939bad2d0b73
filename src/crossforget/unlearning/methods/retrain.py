"""Retrain: the forgetting ground truth of the paper (train from scratch on train \\ D_f)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from crossforget.unlearning.methods.base import OptionsMethod, StageTimer, UnlearningTask, UnlearnResult
from crossforget.unlearning.methods.registry import register_method


@dataclass
class RetrainOptions:
    """``epochs``: None keeps the Original's recipe, which makes Retrain the forgetting ground truth."""

    epochs: int | None = None


@register_method(
    "retrain", RetrainOptions, label="Retrain", seeding="fixed", ground_truth=True, flags={"epochs": ()}
)
class Retrain(OptionsMethod):
    """Train from scratch on train \\ D_f with the Original's recipe (new proxies, new initialisation)."""

    options: RetrainOptions

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        timer = StageTimer()
        with timer.stage("train"):
            fresh = task.fresh_model(seed)
            task.fit(
                fresh,
                task.train_retain,
                self.options.epochs or task.training_epochs,
                seed,
                fresh_loss=True,
                lr_scale=1.0,
            )
        return UnlearnResult(fresh, timer.total(), {"train_samples": int(task.train_retain.size)})
