"""The method protocol, the task object methods work on, and helpers every method uses.

A method never modifies the model it is given: it returns a new one. Everything model-specific
(the loss, how batches are made, how to train or re-initialise) comes through ``UnlearningTask``,
so the same PPP and SSD code serves hashing models and classifiers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.losses.base import Batch, ModelLoss
from crossforget.unlearning.guard import RetentionProbe


@dataclass
class UnlearningTask:
    """What a method may use. Index arrays point into the dataset behind ``batches``."""

    loss: ModelLoss
    batches: Callable[[np.ndarray, int], Iterable[Batch]]
    labels: torch.Tensor
    train_forget: np.ndarray
    train_retain: np.ndarray
    forget_classes: list[int]
    class_names: list[str]
    fit: Callable[..., ModelLoss]
    fresh_model: Callable[[int], nn.Module]
    reinit_names: Callable[[nn.Module], list[str]]
    prototypes: Callable[[str], torch.Tensor]
    stored_fisher: dict[str, torch.Tensor] | None = None
    # How ``stored_fisher`` was made: {"estimator", "batch_size"[, "samples"]} (see ``stored_fisher_record``).
    stored_fisher_info: dict[str, Any] | None = None
    training_epochs: int = 1
    # Optional pieces for the output-level methods (Bad Teacher, Amnesiac); None where not provided.
    # outputs(model, batch) -> (B, ...) what the model emits (logits, or image and text codes side by side);
    # distillation_loss(student_out, teacher_out) -> (B,) per-sample loss pulling the student to the teacher;
    # fit_relabelled(model, indices, labels, epochs, seed, lr, batch_size) trains in place on ``indices``
    # with ``labels`` (rows of the multi-hot label matrix, possibly altered) instead of the true labels.
    outputs: Callable[[nn.Module, Batch], torch.Tensor] | None = None
    distillation_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    fit_relabelled: Callable[..., None] | None = None
    # random_model(seed) -> the architecture with every weight randomly initialised, no pretrained
    # weights (Bad Teacher's incompetent teacher); ``fresh_model`` is where training starts, pretrained
    # weights included.
    random_model: Callable[[int], nn.Module] | None = None
    # Held-out scoring for the forgetting guard (never the test queries); None: the guard cannot run.
    probe: RetentionProbe | None = None

    @property
    def train_all(self) -> np.ndarray:
        return np.sort(np.concatenate([self.train_forget, self.train_retain]))


# Checkpoints written before the record existed store a Fisher without saying how it was made;
# ``attach_full_fisher`` has only ever used the batch estimator at batch size 32.
LEGACY_STORED_FISHER = {"estimator": "batch", "batch_size": 32}


def stored_fisher_record(config: dict, fisher: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """How a checkpoint's stored Fisher was made, from its config (None when it stores none)."""
    if not fisher:
        return None
    return dict(config.get("stored_fisher") or LEGACY_STORED_FISHER)


@dataclass
class UnlearnResult:
    """The new model, wall time per stage (seconds) and method-specific diagnostics."""

    model: nn.Module
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


class UnlearningMethod(Protocol):
    name: str

    def unlearn(self, model: nn.Module, task: UnlearningTask, seed: int) -> UnlearnResult: ...


class OptionsMethod:
    """What every registered method shares: it is built from one instance of its options dataclass."""

    name: str

    def __init__(self, options: Any) -> None:
        self.options = options


class StageTimer:
    """Collects wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + perf_counter() - start

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": sum(self.seconds.values())}


def sample_indices(
    indices: np.ndarray, budget: int | None, seed: int | np.random.SeedSequence, what: str
) -> np.ndarray:
    """A seeded sample of at most ``budget`` indices (all of them when budget is None)."""
    if budget is not None and budget < 1:
        raise CrossforgetError(f"the {what} sample budget must be >= 1 (or 'all'), got {budget}")
    if indices.size == 0:
        raise CrossforgetError(f"the {what} set is empty; nothing to estimate importances from")
    if budget is None or budget >= indices.size:
        return np.sort(indices)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(indices, size=budget, replace=False))


def forget_sample(task: UnlearningTask, budget: int | None, seed: int) -> np.ndarray:
    """The forget sample of run ``seed``, drawn the same way by every method that samples D_f.

    Seed s therefore means the same forget samples in SSD, PPP and any other sampled method, so their
    results at one seed are a paired comparison. It is drawn from ``default_rng(seed)``; a method that
    needs more samples draws them from ``extra_streams(seed, n)``, which never shifts this one.
    """
    return sample_indices(task.train_forget, budget, seed, "forget")


def extra_streams(seed: int, count: int) -> list[np.random.SeedSequence]:
    """``count`` seed streams of run ``seed`` independent of the forget sample's (SeedSequence children)."""
    return np.random.SeedSequence(seed).spawn(count)


def copy_model(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model)
    clone.eval()
    return clone


def require_task_fields(task: UnlearningTask, *fields: str) -> None:
    """Refuse a task that lacks the optional pieces (``outputs``, ``fit_relabelled``...) a method needs."""
    missing = [f for f in fields if getattr(task, f) is None]
    if missing:
        raise CrossforgetError(
            f"this model's task does not provide {', '.join(missing)}; the method cannot run on it"
        )


def require_training_options(options: Any, what: str) -> None:
    """Refuse ``epochs`` < 1, ``batch_size`` < 1 or ``lr`` <= 0 in options built without ``create_method``."""
    if options.epochs < 1 or options.batch_size < 1 or options.lr <= 0:
        raise CrossforgetError(f"{what} needs epochs >= 1, batch_size >= 1 and lr > 0")
