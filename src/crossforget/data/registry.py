"""Datasets by name, described by a spec that checkpoints store so the same data can be re-created."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import MultiModalData
from crossforget.data.splits import RetrievalSplit, make_split

Loader = Callable[..., MultiModalData]
_LOADERS: dict[str, tuple[Loader, dict]] = {}


def register_dataset(name: str, defaults: dict) -> Callable[[Loader], Loader]:
    """Register a loader with its default options (a root folder for real benchmarks)."""

    def decorate(loader: Loader) -> Loader:
        _LOADERS[name] = (loader, defaults)
        return loader

    return decorate


def dataset_names() -> list[str]:
    _import_builtin_loaders()
    return sorted(_LOADERS)


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


def _import_builtin_loaders() -> None:
    from crossforget.data import builtin_loaders  # noqa: F401  (registers loaders on import)


def load_dataset(spec: DatasetSpec) -> tuple[MultiModalData, RetrievalSplit]:
    _import_builtin_loaders()
    if spec.name not in _LOADERS:
        raise CrossforgetError(
            f"unknown dataset {spec.name!r}; valid datasets: {', '.join(sorted(_LOADERS))}"
        )
    loader, defaults = _LOADERS[spec.name]
    unknown = set(spec.options) - set(defaults)
    if unknown:
        raise CrossforgetError(
            f"dataset {spec.name} does not take option(s) {sorted(unknown)}; it takes {sorted(defaults)}"
        )
    data = loader(**{**defaults, **spec.options})
    return data, make_split(len(data), spec.num_query, spec.num_train, spec.split_seed)
