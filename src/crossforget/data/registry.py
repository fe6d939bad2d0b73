"""Every dataset by name: retrieval (multi-label) and classification (single-label) in one registry.

A dataset registers itself in its own module with :func:`register_dataset`, next to its loader; the
loader's keyword arguments are the dataset's options and their defaults. The registry imports the
modules of the ``crossforget.data`` subpackages on first use, so adding a dataset is adding one file.
Checkpoints store a :class:`DatasetSpec` so the same data can be re-created.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import MultiModalData, SingleLabelData
from crossforget.data.splits import RetrievalSplit, make_split

Kind = Literal["multilabel", "single"]
KINDS: dict[str, str] = {"multilabel": "retrieval (multi-label)", "single": "classification (single-label)"}
Loader = Callable[..., Any]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its kind, its loader and a few words for ``--help``."""

    name: str
    kind: Kind
    loader: Loader
    about: str = ""

    @property
    def options(self) -> list[str]:
        """The option names the loader takes, in its signature's order."""
        return list(inspect.signature(self.loader).parameters)

    @property
    def defaults(self) -> dict:
        """The default of every option that has one (a real benchmark's ``root`` may have none)."""
        parameters = inspect.signature(self.loader).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}

    def label(self) -> str:
        """``name (about)`` for help texts."""
        return f"{self.name} ({self.about})" if self.about else self.name


_ENTRIES: dict[str, DatasetEntry] = {}


def register_dataset(name: str, kind: Kind, about: str = "") -> Callable[[Loader], Loader]:
    """Register ``loader`` as dataset ``name`` of ``kind``; the loader is returned unchanged."""
    if kind not in KINDS:
        raise ValueError(f"dataset {name}: kind must be one of {', '.join(KINDS)}, got {kind!r}")

    def decorate(loader: Loader) -> Loader:
        if name in _ENTRIES and _ENTRIES[name].loader is not loader:
            raise ValueError(f"dataset {name!r} is registered twice")
        _ENTRIES[name] = DatasetEntry(name=name, kind=kind, loader=loader, about=about)
        return loader

    return decorate


@functools.cache
def _discover() -> None:
    """Import every module of the ``crossforget.data`` subpackages once: they register their datasets."""
    package = importlib.import_module("crossforget.data")
    for sub in pkgutil.iter_modules(package.__path__, "crossforget.data."):
        if sub.ispkg:
            subpackage = importlib.import_module(sub.name)
            for module in pkgutil.iter_modules(subpackage.__path__, sub.name + "."):
                importlib.import_module(module.name)


def dataset_entries(kind: Kind | None = None) -> list[DatasetEntry]:
    """The registered datasets (of one kind), sorted by name."""
    _discover()
    return [_ENTRIES[n] for n in sorted(_ENTRIES) if kind is None or _ENTRIES[n].kind == kind]


def dataset_names(kind: Kind | None = None) -> list[str]:
    return [entry.name for entry in dataset_entries(kind)]


def dataset_entry(name: str, kind: Kind) -> DatasetEntry:
    """The dataset ``name``, which must be of ``kind``; errors name the valid choices."""
    _discover()
    valid = ", ".join(dataset_names(kind))
    if kind == "single":
        choices = f"choose one of {valid}"
        unknown = f"unknown classification dataset {name!r}; {choices}"
    else:
        choices = f"valid datasets: {valid}"
        unknown = f"unknown dataset {name!r}; {choices}"
    entry = _ENTRIES.get(name)
    if entry is None:
        raise CrossforgetError(unknown)
    if entry.kind != kind:
        raise CrossforgetError(f"{name} is a {KINDS[entry.kind]} dataset, not {KINDS[kind]}; {choices}")
    return entry


def require_root(name: str, root: str | None) -> str:
    """The root folder of a real benchmark, or an error that says how to give one."""
    if not root:
        raise CrossforgetError(
            f"dataset {name} needs --data-root pointing at its folder (see docs/datasets.md)"
        )
    return root


def _load(entry: DatasetEntry, options: dict) -> Any:
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise CrossforgetError(
            f"dataset {entry.name} has no option(s) {unknown}; valid: {', '.join(entry.options)}"
        )
    return entry.loader(**options)


@dataclass
class DatasetSpec:
    """Which dataset, with which options, split how. Stored in every checkpoint config."""

    name: str
    options: dict = field(default_factory=dict)
    num_query: int = 1000
    num_train: int = 5000
    split_seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DatasetSpec:
        return cls(**values)


def load_dataset(spec: DatasetSpec) -> tuple[MultiModalData, RetrievalSplit]:
    """A retrieval dataset and its query/train/database split."""
    data = _load(dataset_entry(spec.name, "multilabel"), spec.options)
    return data, make_split(len(data), spec.num_query, spec.num_train, spec.split_seed)


def load_single_label(name: str, **options: object) -> SingleLabelData:
    """A classification dataset by name; options are the loader's keyword arguments (errors list them)."""
    return _load(dataset_entry(name, "single"), options)
