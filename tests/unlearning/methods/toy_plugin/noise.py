"""Noise: a toy method (docs/contributing.md, "Adding a method"); seeded Gaussian noise on every weight."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from crossforget.unlearning.methods.base import (
    OptionsMethod,
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
)
from crossforget.unlearning.methods.options import option_range
from crossforget.unlearning.methods.registry import register_method
from crossforget.unlearning.methods.search_space import Dimension


@dataclass
class NoiseOptions:
    """``sigma``: standard deviation of the noise added to every weight."""

    sigma: float = field(default=0.01, metadata=option_range(0, low_open=True))


@register_method(
    "noise",
    NoiseOptions,
    label="Noise",
    seeding="sample",
    search_space={"sigma": Dimension("log", 1e-4, 1e-1)},
    flags={"sigma": ()},
)
class Noise(OptionsMethod):
    options: NoiseOptions

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        timer = StageTimer()
        with timer.stage("perturb"):
            clone = copy_model(model)
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for weight in clone.parameters():
                    noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                    weight.add_(self.options.sigma * noise.to(weight.device))
        return UnlearnResult(clone, timer.total(), {"sigma": self.options.sigma})
