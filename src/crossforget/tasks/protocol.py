"""What an experiment needs from a track (hashing retrieval, image classification), whatever the track.

A track object is made from its loaded data and training settings (each track's ``load``: the
arguments differ by track), then trains or reads its references from the keyed cache, binds a forget
request to the method port (``UnlearningTask``) and scores a model with its own metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from torch import nn

from crossforget.unlearning.methods.base import UnlearningTask

CheckpointT = TypeVar("CheckpointT")


class Task(Protocol[CheckpointT]):
    """One track: its references, its binding to the methods and its evaluation.

    ``metric_names``: the keys of each score record ``evaluate`` returns (per retrieval direction for
    hashing). Forget requests are class names.
    """

    metric_names: tuple[str, ...]

    def reference(self, cache_dir: Path | None, exclude: Sequence[str] = ()) -> tuple[CheckpointT, bool]:
        """The Original (with ``exclude``: the Retrain without those classes); (checkpoint, was_cached)."""
        ...

    def bind(self, saved: CheckpointT, forget: Sequence[str]) -> UnlearningTask:
        """The method port for forgetting ``forget`` from ``saved``."""
        ...

    def evaluate(self, saved: CheckpointT, model: nn.Module, forget: Sequence[str]) -> dict:
        """The track's scores of ``model`` (``saved`` or a model unlearned from it) for ``forget``."""
        ...
