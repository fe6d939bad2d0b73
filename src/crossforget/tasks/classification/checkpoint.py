"""Save and load classifier checkpoints (model + preprocessing config + prototypes + optional Fisher)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from crossforget.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.models.classifier import ImageClassifier, ImagePreprocessor, build_classifier
from crossforget.tasks.classification.recipe import ClassifierRecipe

KIND = "classifier"


@dataclass
class ClassifierCheckpoint:
    """A trained (or unlearned) classifier with its preprocessing, config and Eq. 2 prototypes."""

    model: ImageClassifier
    preprocessor: ImagePreprocessor
    config: dict
    prototypes: torch.Tensor | None = None
    fisher: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def recipe(self) -> ClassifierRecipe:
        return ClassifierRecipe.from_dict(self.config["training"]["recipe"])


def save_classifier_checkpoint(path: str | Path, saved: ClassifierCheckpoint) -> Path:
    extras: dict[str, dict[str, torch.Tensor]] = {}
    if saved.prototypes is not None:
        extras["prototypes"] = {"features": saved.prototypes}
    if saved.fisher:
        extras["fisher"] = saved.fisher
    config = dict(saved.config, kind=KIND)
    return save_checkpoint(path, Checkpoint(config, dict(saved.model.state_dict()), {}, extras))


def load_classifier_checkpoint(path: str | Path) -> ClassifierCheckpoint:
    raw = load_checkpoint(path)
    if raw.config.get("kind") != KIND:
        raise CrossforgetError(f"{path} holds a {raw.config.get('kind')!r} checkpoint, not a classifier")
    model, preprocessor = build_classifier(raw.config["model"], load_pretrained=False)
    try:
        model.load_state_dict(raw.model_state, strict=True)
    except RuntimeError as exc:
        raise CrossforgetError(
            f"{Path(path) / 'weights.safetensors'} does not fit its config: {exc}"
        ) from exc
    model.eval()
    prototypes = raw.extras.get("prototypes", {}).get("features")
    return ClassifierCheckpoint(model, preprocessor, raw.config, prototypes, raw.extras.get("fisher", {}))
