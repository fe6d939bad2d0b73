"""The method registry, filled by discovery: adding a method is one new module.

Every module of this package, and every ``*.py`` file in the folders listed in ``CROSSFORGET_METHODS``
(``os.pathsep``-separated), is imported when the registry is first read (not when this module is
imported); a module that defines a method registers it with ``@register_method``. Each method declares
on itself everything the tables, the tuner and the CLI need to know about it (``MethodInfo``).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.methods.base import UnlearningMethod
from crossforget.unlearning.methods.options import check_options
from crossforget.unlearning.methods.search_space import Dimension

PACKAGE = __name__.rpartition(".")[0]
PLUGIN_ENV = "CROSSFORGET_METHODS"
# The untouched model's column in every table: no method, the ground truth for D_r.
ORIGINAL, ORIGINAL_LABEL = "original", "Original"

# How the run seed enters a method, which decides how often the tables run it:
# "fixed": a reference run once at the training seed (Bad model, Retrain);
# "training": the seed only drives training randomness (Finetune: per seed in Table 1, once in Table 2);
# "sample": the seed draws the data the method works on (SSD, PPP, Bad Teacher, Amnesiac): per seed.
Seeding = Literal["fixed", "training", "sample"]


@dataclass(frozen=True)
class MethodInfo:
    """What a method declares about itself (see ``register_method``)."""

    name: str
    factory: type
    options: type
    label: str
    seeding: Seeding
    ground_truth: bool = False
    hashing_extension: bool = False
    search_space: Mapping[str, Dimension] = field(default_factory=dict)
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    module: str = ""


_METHODS: dict[str, MethodInfo] = {}


def register_method(
    name: str,
    options: type,
    *,
    label: str,
    seeding: Seeding,
    ground_truth: bool = False,
    hashing_extension: bool = False,
    search_space: Mapping[str, Dimension] | None = None,
    flags: Mapping[str, Sequence[str]] | None = None,
) -> Callable[[type], type]:
    """Register a method class whose constructor takes one ``options`` dataclass instance.

    ``label``: its column name in every table. ``seeding``: how the run seed enters it (``Seeding``).
    ``ground_truth``: it is the forgetting ground truth (Retrain), run once per request as a reference.
    ``hashing_extension``: the published method is for classifiers and its hashing form is this
    project's extension (Table 2 marks it with *). ``search_space``: the options ``crossforget tune``
    searches (none: not tunable). ``flags``: options that get a command-line flag of their own name in
    ``unlearn``/``forget``, each with extra spellings (``{"lam": ("--lambda",)}``).
    """

    def decorate(cls: type) -> type:
        info = MethodInfo(
            name,
            cls,
            options,
            label,
            seeding,
            ground_truth,
            hashing_extension,
            dict(search_space or {}),
            {k: tuple(v) for k, v in (flags or {}).items()},
            cls.__module__,
        )
        _check_declaration(info)
        known = _METHODS.get(name)
        if known is not None and known.module != info.module:
            raise CrossforgetError(f"method {name!r} of {info.module} is already defined by {known.module}")
        cls.name = name
        _METHODS[name] = info
        return cls

    return decorate


def _check_declaration(info: MethodInfo) -> None:
    """A declaration that names options the method lacks fails when its module is discovered."""
    if info.seeding not in ("fixed", "training", "sample"):
        raise CrossforgetError(f"method {info.name}: seeding must be fixed, training or sample")
    if not info.label.strip():
        raise CrossforgetError(f"method {info.name}: give it a label")
    fields = {f.name for f in dataclasses.fields(info.options)}
    for what, names in (("search_space", info.search_space), ("flags", info.flags)):
        stray = sorted(set(names) - fields)
        if stray:
            raise CrossforgetError(f"method {info.name}: {what} names {stray}, which are not options")


def plugin_folders() -> list[Path]:
    """The folders of ``CROSSFORGET_METHODS``; a listed folder that does not exist is an error."""
    folders = [Path(p) for p in os.environ.get(PLUGIN_ENV, "").split(os.pathsep) if p.strip()]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise CrossforgetError(f"{PLUGIN_ENV} names folder(s) that do not exist: {', '.join(missing)}")
    return folders


def _load_plugin(path: Path) -> str:
    """Import one plugin file (once per file) and return its module name."""
    name = f"crossforget_method_plugins.{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(loaded.__file__ or "").resolve() == path.resolve():
        return name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CrossforgetError(f"cannot import method plugin {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a file that failed to load is tried again, not half-registered
        raise
    return name


def _discover() -> set[str]:
    """Import this package's modules and the plugin files; the names of the modules now in view."""
    package = sys.modules[PACKAGE]
    names = {f"{PACKAGE}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}
    for name in sorted(names):
        importlib.import_module(name)
    for folder in plugin_folders():
        names.update(_load_plugin(path) for path in sorted(folder.glob("*.py")))
    return names


def _registered() -> dict[str, MethodInfo]:
    """The methods of the modules in view, in order: the package's (by module name), then plugins'."""
    modules = _discover()
    found = [info for info in _METHODS.values() if info.module in modules]
    found.sort(key=lambda info: (info.module.startswith("crossforget_method_plugins."), info.module))
    return {info.name: info for info in found}


def method_names() -> list[str]:
    return list(_registered())


def find_method(name: str) -> MethodInfo | None:
    """The declaration of method ``name``, None when no discovered module defines it."""
    return _registered().get(name)


def method_info(name: str) -> MethodInfo:
    methods = _registered()
    if name not in methods:
        raise CrossforgetError(f"unknown method {name!r}; choose one of: {', '.join(methods)}")
    return methods[name]


def method_options(name: str) -> type:
    return method_info(name).options


def method_label(name: str) -> str:
    """A column's display label: the method's own, "Original" for the original, else the name."""
    if name == ORIGINAL:
        return ORIGINAL_LABEL
    info = find_method(name)
    return name if info is None else info.label


def seeding(name: str) -> Seeding:
    """How the run seed enters column ``name`` (the original is a fixed reference)."""
    return "fixed" if name == ORIGINAL else method_info(name).seeding


def reference_columns() -> tuple[str, ...]:
    """The ground-truth columns: the original (for D_r) and the forgetting ground truth (for D_f)."""
    return (ORIGINAL, *(n for n, info in _registered().items() if info.ground_truth))


def tunable_methods() -> list[str]:
    """Methods that declare a search space."""
    return [n for n, info in _registered().items() if info.search_space]


def option_flags() -> dict[str, tuple[str, ...]]:
    """Every method's flags merged: option name -> its extra spellings (one flag serves every method
    with that option; the values are checked against the chosen method's options)."""
    merged: dict[str, tuple[str, ...]] = {}
    for info in _registered().values():
        for option, aliases in info.flags.items():
            merged[option] = tuple(dict.fromkeys((*merged.get(option, ()), *aliases)))
    return merged


def validate_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of method ``name`` checked and converted (``options.check_options``); the one place
    every method's options from flags, ``--option``, ``--params`` files and tuning pass through."""
    return check_options(name, method_options(name), options)


def create_method(name: str, **options: Any) -> UnlearningMethod:
    """Instantiate a registered method; options are checked and converted by ``validate_options``."""
    info = method_info(name)
    return info.factory(info.options(**check_options(name, info.options, options)))
