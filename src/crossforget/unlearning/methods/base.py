"""The method protocol, the task object methods work on, and the registry.

A method never modifies the model it is given: it returns a new one. Everything model-specific
(the loss, how batches are made, how to train or re-initialise) comes through ``UnlearningTask``,
so the same PPP and SSD code serves hashing models and classifiers.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Literal, Protocol

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


@dataclass
class _Entry:
    factory: type
    options: type


_METHODS: dict[str, _Entry] = {}
_BUILTIN = ("reference", "ssd_method", "ppp_method", "bad_teacher", "amnesiac")


def register_method(name: str, options: type) -> Callable[[type], type]:
    """Register a method class whose constructor takes one ``options`` dataclass instance."""

    def decorate(cls: type) -> type:
        cls.name = name
        _METHODS[name] = _Entry(cls, options)
        return cls

    return decorate


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"crossforget.unlearning.methods.{module}")


def method_names() -> list[str]:
    _load_builtin()
    return list(_METHODS)


def method_options(name: str) -> type:
    _load_builtin()
    return _entry(name).options


def _entry(name: str) -> _Entry:
    if name not in _METHODS:
        raise CrossforgetError(f"unknown method {name!r}; choose one of: {', '.join(_METHODS)}")
    return _METHODS[name]


@dataclass(frozen=True)
class OptionRange:
    """The values a numeric option may take: ``low`` <= value <= ``high`` (strict where ``*_open``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)


def option_range(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> dict[str, OptionRange]:
    """Field metadata declaring an option's range: ``field(default=0.3, metadata=option_range(0, 1))``."""
    return {"range": OptionRange(low, high, low_open, high_open)}


_COUNT = OptionRange(1)
_POSITIVE = OptionRange(0, low_open=True)
_NONE_WORDS = ("all", "none", "null")


def _default_range(name: str, kind: type) -> OptionRange | None:
    """Ranges that follow from an option's name: counts, sizes and epochs are >= 1, learning rates
    and their scales > 0. Anything else is only required to be finite unless its field declares more."""
    if kind is int and (name in ("k", "epochs", "batch_size") or name.endswith(("_samples", "_epochs"))):
        return _COUNT
    if kind is float and (name == "lr" or name.endswith(("_lr", "_scale"))):
        return _POSITIVE
    return None


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotated type; ValueError with what was expected otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _coerce(value, inner)
        except ValueError as exc:
            raise ValueError(f"{exc} or 'all'") from None
    if origin is Literal:
        if value not in args:
            raise ValueError("must be one of " + ", ".join(repr(a) for a in args))
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def validate_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of method ``name`` checked against its options dataclass and converted to the field
    types (``forget_samples=all`` becomes None, ``k=3.0`` becomes 3); the one place every method's
    options from flags, ``--option``, ``--params`` files and tuning pass through."""
    _load_builtin()
    entry = _entry(name)
    fields = {f.name: f for f in dataclasses.fields(entry.options)}
    unknown = set(options) - set(fields)
    if unknown:
        raise CrossforgetError(f"method {name} has no option(s) {sorted(unknown)}; valid: {sorted(fields)}")
    hints = typing.get_type_hints(entry.options)
    checked = {}
    for key, value in options.items():
        default = fields[key].default
        example = f"e.g. {key}={default}" if default is not dataclasses.MISSING else f"a valid {key}"
        try:
            converted = _coerce(value, hints[key])
        except ValueError as exc:
            raise CrossforgetError(f"method {name} option {key}={value!r} {exc}; {example}") from None
        kind = int if isinstance(converted, int) and not isinstance(converted, bool) else type(converted)
        bounds = fields[key].metadata.get("range") or _default_range(key, kind)
        if bounds is not None and converted is not None and converted not in bounds:
            raise CrossforgetError(f"method {name} option {key}={value!r} must be {bounds}; {example}")
        checked[key] = converted
    return checked


def create_method(name: str, **options: Any) -> UnlearningMethod:
    """Instantiate a registered method; options are checked and converted by ``validate_options``."""
    checked = validate_options(name, options)
    entry = _entry(name)
    return entry.factory(entry.options(**checked))


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
