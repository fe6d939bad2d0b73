"""The classification track behind the ``Task`` protocol: image classifiers on single-label data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from crossforget.data.container import SingleLabelData
from crossforget.engine.reference_cache import cache_key, cached_reference
from crossforget.metrics.keys import CLASSIFICATION_RECORD
from crossforget.metrics.mia import ShadowAttack
from crossforget.tasks.classification.checkpoint import (
    ClassifierCheckpoint,
    load_classifier_checkpoint,
    save_classifier_checkpoint,
)
from crossforget.tasks.classification.evaluation import evaluate_classifier
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.store import ImageStore, make_store
from crossforget.tasks.classification.task import classification_task
from crossforget.tasks.classification.training import train_classifier
from crossforget.unlearning.methods.base import UnlearningTask


@dataclass
class ClassificationTrack:
    """``data`` with classifiers of ``model_config`` trained with ``recipe`` at ``seed``.

    ``shadow``: the shadow-model attack ``evaluate`` adds ``mia_shadow`` with (None: left out).
    """

    data: SingleLabelData
    model_config: dict
    recipe: ClassifierRecipe = field(default_factory=ClassifierRecipe)
    seed: int = 0
    shadow: ShadowAttack | None = None
    metric_names: tuple[str, ...] = CLASSIFICATION_RECORD
    store: ImageStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = make_store(self.data, self.model_config)

    def reference(
        self, cache_dir: Path | None, exclude: Sequence[str] = ()
    ) -> tuple[ClassifierCheckpoint, bool]:
        """Trained from scratch; the Original's entry is the one ``table1`` caches for the same settings."""
        classes = self.data.class_indices(exclude) if exclude else []

        def build() -> ClassifierCheckpoint:
            label = "Retrain" if exclude else "Original"
            return train_classifier(
                self.data, self.store, self.model_config, self.recipe, self.seed, classes, description=label
            )

        if cache_dir is None:
            return build(), False
        role = "retrain-" + "-".join(sorted(exclude)) if exclude else "original"
        description = {
            "role": role,
            "dataset": self.data.info.get("fingerprint"),
            "model": self.model_config,
            "recipe": self.recipe.to_dict(),
            "seed": self.seed,
        }
        folder = cache_dir / f"{role}-{cache_key(description)}"
        return cached_reference(folder, load_classifier_checkpoint, save_classifier_checkpoint, build)

    def bind(self, saved: ClassifierCheckpoint, forget: Sequence[str]) -> UnlearningTask:
        return classification_task(saved, self.data, self.store, self.data.class_indices(forget))

    def evaluate(self, saved: ClassifierCheckpoint, model: nn.Module, forget: Sequence[str]) -> dict:
        """Accuracies and membership attacks as fractions (``evaluate_classifier``)."""
        return evaluate_classifier(model, self.store, self.data, self.data.class_indices(forget), self.shadow)
