"""The hashing track behind the ``Task`` protocol: cross-modal hashing models on multi-label data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.registry import DatasetSpec
from crossforget.engine.training import TrainingRecipe
from crossforget.metrics.keys import RETRIEVAL
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint
from crossforget.tasks.hashing.evaluation import evaluate_model
from crossforget.tasks.hashing.reference import trained_reference
from crossforget.tasks.hashing.task import hashing_task, store_for
from crossforget.tasks.hashing.training import LoadedData, load_data, train_hashing
from crossforget.unlearning.methods.base import UnlearningTask


@dataclass
class HashingTrack:
    """One bit length of one dataset, trained with ``recipe`` at ``seed`` from ``model_options``."""

    loaded: LoadedData
    bits: int
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    seed: int = 0
    model_options: dict = field(default_factory=dict)
    metric_names: tuple[str, ...] = RETRIEVAL

    @classmethod
    def load(cls, spec: DatasetSpec, bits: int, **settings: object) -> HashingTrack:
        """The dataset of ``spec`` (on the CPU) with these training ``settings`` (recipe, seed, ...)."""
        return cls(load_data(spec), bits, **settings)  # type: ignore[arg-type]

    def reference(
        self, cache_dir: Path | None, exclude: Sequence[str] = ()
    ) -> tuple[HashingCheckpoint, bool]:
        if cache_dir is None:
            args = (self.loaded, self.bits, self.recipe, self.seed, exclude, self.model_options, False)
            return train_hashing(*args), False
        return trained_reference(
            cache_dir, self.loaded, self.bits, self.recipe, self.seed, exclude, self.model_options
        )

    def bind(self, saved: HashingCheckpoint, forget: Sequence[str]) -> UnlearningTask:
        return hashing_task(saved, self.loaded, ForgetRequest(forget))

    def evaluate(self, saved: HashingCheckpoint, model: nn.Module, forget: Sequence[str]) -> dict:
        """{direction: {retain, forget_label, forget_any}}: mAP fractions on the query split."""
        part = partition(self.loaded.data, self.loaded.split, ForgetRequest(forget))
        records = evaluate_model(model, store_for(saved, self.loaded), self.loaded.split, part)
        return {r["direction"]: {k: r[k] for k in self.metric_names} for r in records}
