"""The paper's reference configurations: Retrain (ground truth), Bad model, Finetune."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from crossforget.unlearning.methods.base import (
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
    register_method,
)


@dataclass
class RetrainOptions:
    """``epochs``: None keeps the Original's recipe, which makes Retrain the forgetting ground truth."""

    epochs: int | None = None


@register_method("retrain", RetrainOptions)
class Retrain:
    """Train from scratch on train \\ D_f with the Original's recipe (new proxies, new initialisation)."""

    def __init__(self, options: RetrainOptions) -> None:
        self.options = options

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


@dataclass
class BadModelOptions:
    """No options: the re-initialised part is decided by the model (what was trained from scratch)."""


@register_method("bad_model", BadModelOptions)
class BadModel:
    """Random re-initialisation of what was trained from scratch (everything for the small encoders,
    the hash heads only when the backbone was pretrained)."""

    def __init__(self, options: BadModelOptions) -> None:
        self.options = options

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        timer = StageTimer()
        with timer.stage("reinitialise"):
            clone = copy_model(model)
            fresh = task.fresh_model(seed).state_dict()
            names = task.reinit_names(clone)
            state = clone.state_dict()
            for name in names:
                state[name] = fresh[name].clone()
            clone.load_state_dict(state)
        return UnlearnResult(clone, timer.total(), {"reinitialised_tensors": len(names)})


@dataclass
class FinetuneOptions:
    """5 epochs of the training loss on D_r (the paper); ``lr_scale`` multiplies the training lr."""

    epochs: int = 5
    lr_scale: float = 1.0


@register_method("finetune", FinetuneOptions)
class Finetune:
    def __init__(self, options: FinetuneOptions) -> None:
        self.options = options

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
