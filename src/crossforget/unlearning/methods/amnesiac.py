"""Amnesiac unlearning (Graves et al., AAAI 2021), in the relabelling form the SSD code runs.

Every forget sample gets a wrong label, drawn once at random from the retained classes; the model
then trains on the retain set plus the relabelled forget samples. For multi-label data (hashing
models, our extension) each forget label of a sample is replaced by a random retained label the
sample does not already carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.methods.base import (
    OptionsMethod,
    StageTimer,
    UnlearningTask,
    UnlearnResult,
    copy_model,
    require_task_fields,
    require_training_options,
)
from crossforget.unlearning.methods.registry import register_method


@dataclass
class AmnesiacOptions:
    """Reference settings: 3 epochs, Adam lr 1e-4, batch 128."""

    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 128


def relabel(labels: torch.Tensor, forget_classes: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
    """A copy of multi-hot ``labels`` (n, C) in which every forget label moves to a random retained class.

    The new class is drawn uniformly from the retained classes the row does not carry yet (so a
    single-label row never keeps its class and never lands on another forget class). A row that already
    carries every retained class just loses its forget labels.
    """
    forget = sorted(set(int(c) for c in forget_classes))
    num_classes = labels.shape[1]
    if not forget or min(forget) < 0 or max(forget) >= num_classes:
        raise CrossforgetError(f"forget classes {forget} do not fit labels with {num_classes} classes")
    retained = np.setdiff1d(np.arange(num_classes), forget)
    out = labels.clone()
    rows = out.numpy()  # shares memory with ``out``
    for i in range(rows.shape[0]):
        carried = rows[i, forget].astype(bool)
        if not carried.any():
            continue
        rows[i, forget] = 0
        free = retained[rows[i, retained] == 0]
        picks = rng.choice(free, size=min(int(carried.sum()), free.size), replace=False)
        rows[i, picks] = 1
    return out


@register_method(
    "amnesiac",
    AmnesiacOptions,
    label="Amnesiac",
    seeding="sample",
    hashing_extension=True,
    flags={"epochs": ()},
)
class Amnesiac(OptionsMethod):
    options: AmnesiacOptions

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult:
        o = self.options
        require_task_fields(task, "fit_relabelled")
        require_training_options(o, "Amnesiac")
        timer = StageTimer()
        rng = np.random.default_rng(seed)
        with timer.stage("relabel"):
            forget_labels = relabel(task.labels[task.train_forget], task.forget_classes, rng)
            indices = np.concatenate([task.train_retain, task.train_forget])
            labels = torch.cat([task.labels[task.train_retain], forget_labels])
        with timer.stage("train"):
            clone = copy_model(model)
            task.fit_relabelled(clone, indices, labels, o.epochs, seed, lr=o.lr, batch_size=o.batch_size)
            clone.eval()
        return UnlearnResult(
            clone,
            timer.total(),
            {
                "relabelled": int(task.train_forget.size),
                "train_samples": int(indices.size),
                "epochs": o.epochs,
            },
        )
