"""Unlearning methods behind one protocol and a registry (adding a method = one new module)."""

from crossforget.unlearning.methods.base import UnlearningMethod, UnlearningTask, UnlearnResult
from crossforget.unlearning.methods.options import OptionRange, option_range
from crossforget.unlearning.methods.registry import (
    ORIGINAL,
    MethodInfo,
    create_method,
    find_method,
    method_info,
    method_label,
    method_names,
    method_options,
    option_flags,
    reference_columns,
    register_method,
    seeding,
    tunable_methods,
    validate_options,
)
from crossforget.unlearning.methods.search_space import Dimension

__all__ = [
    "ORIGINAL",
    "Dimension",
    "MethodInfo",
    "OptionRange",
    "UnlearnResult",
    "UnlearningMethod",
    "UnlearningTask",
    "create_method",
    "find_method",
    "method_info",
    "method_label",
    "method_names",
    "method_options",
    "option_flags",
    "option_range",
    "reference_columns",
    "register_method",
    "seeding",
    "tunable_methods",
    "validate_options",
]
