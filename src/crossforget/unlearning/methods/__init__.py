"""Unlearning methods behind one protocol and a registry (adding a method = one new module)."""

from crossforget.unlearning.methods.base import (
    UnlearningMethod,
    UnlearningTask,
    UnlearnResult,
    create_method,
    method_names,
    method_options,
    register_method,
)

__all__ = [
    "UnlearnResult",
    "UnlearningMethod",
    "UnlearningTask",
    "create_method",
    "method_names",
    "method_options",
    "register_method",
]
