"""One dimension of a method's Optuna search space, declared by the method itself (tuning reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crossforget.core.errors import CrossforgetError

if TYPE_CHECKING:  # optuna is only needed to run a search, not to declare one
    import optuna


@dataclass(frozen=True)
class Dimension:
    """One searched option: ``log`` (log-uniform float), ``float`` (uniform) or ``int`` (uniform integer)."""

    kind: str
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in ("log", "float", "int"):
            raise CrossforgetError(f"unknown dimension kind {self.kind!r}")
        if not self.low < self.high:
            raise CrossforgetError(f"a search range needs low < high, got {self.low}:{self.high}")
        if self.kind == "log" and self.low <= 0:
            raise CrossforgetError(f"a log-uniform range needs a positive lower end, got {self.low}")

    def suggest(self, trial: optuna.Trial, name: str) -> float | int:
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "log")
