"""Unlearning methods behind one protocol and a registry (adding a method = one new module)."""

from crossforget.unlearning.methods.base import (
    OptionRange,
    UnlearningMethod,
    UnlearningTask,
    UnlearnResult,
    create_method,
    method_names,
    method_options,
    option_range,
    register_method,
    validate_options,
)

__all__ = [
    "OptionRange",
    "UnlearnResult",
    "UnlearningMethod",
    "UnlearningTask",
    "create_method",
    "method_names",
    "method_options",
    "option_range",
    "register_method",
    "validate_options",
]
