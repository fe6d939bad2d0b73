"""Bad model: the paper's lower bound, a random re-initialisation of what was trained from scratch."""

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
class BadModelOptions:
    """No options: the re-initialised part is decided by the model (what was trained from scratch)."""


@register_method("bad_model", BadModelOptions, label="Bad", seeding="fixed")
class BadModel(OptionsMethod):
    """Random re-initialisation of what was trained from scratch (everything for the small encoders,
    the hash heads only when the backbone was pretrained)."""

    options: BadModelOptions

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
