"""Finetune: the paper's baseline of further training on the retain set D_r."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from crossforget.unlearning.methods.base import (
    OptionsMethod,
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
)
from crossforget.unlearning.methods.registry import register_method


@dataclass
class FinetuneOptions:
    """5 epochs of the training loss on D_r (the paper); ``lr_scale`` multiplies the training lr."""

    epochs: int = 5
    lr_scale: float = 1.0


@register_method("finetune", FinetuneOptions, label="Finetune", seeding="training", flags={"epochs": ()})
class Finetune(OptionsMethod):
    options: FinetuneOptions

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        timer = StageTimer()
        with timer.stage("finetune"):
            clone = copy_model(model)
            task.fit(
                clone,
                task.train_retain,
                self.options.epochs,
                seed,
                fresh_loss=False,
                lr_scale=self.options.lr_scale,
            )
            clone.eval()
        return UnlearnResult(
            clone,
            timer.total(),
            {"train_samples": int(task.train_retain.size), "epochs": self.options.epochs},
        )
