"""Bind a classifier checkpoint and its data to the method protocol (``UnlearningTask``).

The same PPP and SSD code (and every other registered method) runs on classifiers: the loss is
cross-entropy, prototypes are class means of the penultimate features, batches are {"images",
"labels" (class indices)}. Retrain uses the Original's recipe, Finetune the SSD reference settings
(``recipe.FINETUNE_*``), relabelled training (Amnesiac) Adam at the method's learning rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import SingleLabelData
from crossforget.losses.base import ModelLoss
from crossforget.losses.classification import CrossEntropyLoss, kl_to_teacher
from crossforget.models.classifier import build_classifier, head_parameter_names
from crossforget.tasks import adapters
from crossforget.tasks.classification import training
from crossforget.tasks.classification.checkpoint import ClassifierCheckpoint
from crossforget.tasks.classification.evaluation import predict
from crossforget.tasks.classification.probe import classification_probe
from crossforget.tasks.classification.recipe import (
    FINETUNE_LR,
    FINETUNE_MOMENTUM,
    FINETUNE_WEIGHT_DECAY,
    ClassifierRecipe,
)
from crossforget.tasks.classification.store import ImageStore, classifier_batches, forget_split
from crossforget.unlearning.methods.base import UnlearningTask, stored_fisher_record


def _fit_recipe(saved: ClassifierCheckpoint, fresh: bool, epochs: int, lr_scale: float) -> ClassifierRecipe:
    """From scratch (Retrain): the Original's recipe; otherwise Finetune's SGD settings."""
    if fresh:
        return dataclasses.replace(saved.recipe, epochs=epochs, lr=saved.recipe.lr * lr_scale)
    return dataclasses.replace(
        saved.recipe,
        epochs=epochs,
        optimiser="sgd",
        lr=FINETUNE_LR * lr_scale,
        momentum=FINETUNE_MOMENTUM,
        weight_decay=FINETUNE_WEIGHT_DECAY,
        schedule="constant",
    )


def _relabel_recipe(saved: ClassifierCheckpoint, epochs: int, lr: float, batch_size: int) -> ClassifierRecipe:
    return dataclasses.replace(
        saved.recipe, epochs=epochs, optimiser="adam", lr=lr, batch_size=batch_size, schedule="constant"
    )


def _adapters(saved: ClassifierCheckpoint, store: ImageStore, train: np.ndarray) -> adapters.TrackAdapters:
    def build(pretrained: bool) -> nn.Module:
        return build_classifier(saved.config["model"], load_pretrained=pretrained)[0]

    def fit(
        model: nn.Module,
        loss: ModelLoss,
        indices: np.ndarray,
        recipe: ClassifierRecipe,
        seed: int,
        fresh: bool,
    ) -> None:
        description = "retrain" if fresh else "finetune"
        training.train_loop(model, store, indices, recipe, seed, description=description, show_progress=False)

    def relabelled(
        model: nn.Module, indices: np.ndarray, labels: torch.Tensor, recipe: ClassifierRecipe, seed: int
    ) -> None:
        if labels.shape[0] != len(indices) or not bool((labels.sum(dim=1) == 1).all()):
            raise CrossforgetError(
                "relabelled training needs exactly one class per sample, one row per index"
            )
        targets = labels.argmax(dim=1)
        training.train_loop(
            model,
            store,
            indices,
            recipe,
            seed,
            targets=targets,
            description="relabelled",
            show_progress=False,
        )

    def prototypes() -> torch.Tensor:
        """Class means of penultimate features, computed once when the checkpoint has none."""
        if saved.prototypes is None:
            saved.prototypes = training.compute_prototypes(saved.model, store, train)
        return saved.prototypes

    return adapters.TrackAdapters(
        build=build,
        pretrained=bool(saved.config["model"].get("pretrained")),
        head_names=head_parameter_names,
        fit_recipe=lambda fresh, epochs, lr_scale: _fit_recipe(saved, fresh, epochs, lr_scale),
        relabel_recipe=lambda epochs, lr, batch_size: _relabel_recipe(saved, epochs, lr, batch_size),
        fit_loss=lambda fresh, seed, model: CrossEntropyLoss(),
        train=fit,
        train_relabelled=relabelled,
        prototypes=prototypes,
    )


def _outputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["images"])


def classification_task(
    saved: ClassifierCheckpoint, data: SingleLabelData, store: ImageStore, forget_classes: Sequence[int]
) -> UnlearningTask:
    train_forget, train_retain = forget_split(data, forget_classes)
    if train_forget.size == 0:
        names = ", ".join(data.class_names[c] for c in forget_classes)
        raise CrossforgetError(f"no training image of {names}; nothing to forget")
    return _adapters(saved, store, data.train).task(
        loss=CrossEntropyLoss(),
        batches=lambda indices, size: classifier_batches(store, indices, size),
        labels=store.one_hot,
        train_forget=train_forget,
        train_retain=train_retain,
        forget_classes=list(forget_classes),
        class_names=list(data.class_names),
        stored_fisher=saved.fisher or None,
        stored_fisher_info=stored_fisher_record(saved.config, saved.fisher),
        training_epochs=saved.recipe.epochs,
        outputs=_outputs,
        distillation_loss=kl_to_teacher,
        probe=classification_probe(
            lambda model, indices: predict(model, store, indices),
            data.targets,
            data.train,
            forget_classes,
            seed=int(saved.config.get("training", {}).get("seed", 0)),
        ),
    )


def attach_full_fisher(saved: ClassifierCheckpoint, store: ImageStore, indices: np.ndarray) -> None:
    """Store the full-training-set Fisher (batch estimator) so SSD skips that pass on every seed."""
    adapters.attach_full_fisher(
        saved, CrossEntropyLoss(), lambda rows, size: classifier_batches(store, rows, size), indices
    )
