"""Method options: declared ranges and the checks every value from flags, files and tuning passes."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from crossforget.core.errors import CrossforgetError


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


def check_options(name: str, options_type: type, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of method ``name`` checked against its options dataclass and converted to the field
    types (``forget_samples=all`` becomes None, ``k=3.0`` becomes 3)."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = set(options) - set(fields)
    if unknown:
        raise CrossforgetError(f"method {name} has no option(s) {sorted(unknown)}; valid: {sorted(fields)}")
    hints = typing.get_type_hints(options_type)
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
