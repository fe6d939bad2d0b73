"""Train a classifier from scratch (Original, Retrain, shadow models) or in place (Finetune, Amnesiac)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import partial

import numpy as np
import torch
from torch import nn

from crossforget.core import distributed
from crossforget.core.errors import CrossforgetError
from crossforget.core.reproducibility import environment_stamp, seed_everything
from crossforget.data.container import SingleLabelData
from crossforget.engine.training import Shard, step_count, train_epochs, warmup_cosine
from crossforget.losses.base import Batch
from crossforget.losses.classification import CrossEntropyLoss
from crossforget.models.classifier import ImageClassifier, build_classifier
from crossforget.tasks.classification.checkpoint import ClassifierCheckpoint
from crossforget.tasks.classification.evaluation import penultimate_features
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.store import ImageStore, classifier_batches, forget_split
from crossforget.unlearning.prototypes import class_prototypes


class RecipeOptimiser:
    """SGD (momentum, weight decay) or Adam over the trainable parameters, at ``recipe.lr`` x schedule."""

    def __init__(self, model: nn.Module, recipe: ClassifierRecipe) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        self.lr = recipe.lr
        if recipe.optimiser == "sgd":
            self.optimiser: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
            )
        else:
            self.optimiser = torch.optim.Adam(params, lr=recipe.lr)

    def schedule(self, scale: float) -> None:
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr * scale

    def zero_grad(self) -> None:
        self.optimiser.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimiser.step()


def train_loop(
    model: nn.Module,
    store: ImageStore,
    indices: np.ndarray,
    recipe: ClassifierRecipe,
    seed: int,
    targets: torch.Tensor | None = None,
    description: str = "training",
    show_progress: bool = True,
) -> list[float]:
    """Train ``model`` in place with cross-entropy (full precision); returns the mean loss per epoch."""
    if len(indices) == 0:
        raise CrossforgetError("no training samples; check the split and the forget request")
    generator = seed_everything(seed)
    optimiser = RecipeOptimiser(model, recipe)
    total = step_count(len(indices), recipe.batch_size, recipe.epochs)
    warmup = int(recipe.warmup_fraction * total) if recipe.schedule == "cosine" else 0

    epoch = partial(
        classifier_batches, store, indices, recipe.batch_size, generator=generator, targets=targets
    )

    def batches(shard: Shard) -> Iterable[Batch]:
        return epoch(shuffle=True, augment=recipe.augment, shard=shard)

    def schedule(step: int) -> float:
        return warmup_cosine(step, total, warmup) if recipe.schedule == "cosine" else 1.0

    return train_epochs(
        model,
        CrossEntropyLoss(),
        optimiser,
        batches,
        recipe.epochs,
        schedule,
        description,
        show_progress,
        mixed_precision=False,
    )


def compute_prototypes(model: ImageClassifier, store: ImageStore, indices: np.ndarray) -> torch.Tensor:
    """Class means of the penultimate features over ``indices`` (NaN rows for classes without samples)."""
    return class_prototypes(
        penultimate_features(model, store, indices), store.one_hot[torch.as_tensor(indices)]
    )


def train_classifier(
    data: SingleLabelData,
    store: ImageStore,
    model_config: dict,
    recipe: ClassifierRecipe,
    seed: int,
    exclude: Sequence[int] = (),
    indices: np.ndarray | None = None,
    description: str = "train",
    show_progress: bool = True,
) -> ClassifierCheckpoint:
    """Train from scratch on ``indices`` (default: the train split minus the ``exclude`` classes)."""
    if indices is None:
        indices = forget_split(data, exclude)[1] if exclude else data.train
    seed_everything(seed)
    model, preprocessor = build_classifier(model_config)
    started = time.perf_counter()
    history = train_loop(
        model, store, indices, recipe, seed, description=description, show_progress=show_progress
    )
    seconds = time.perf_counter() - started
    config = {
        "model": model_config,
        "class_names": list(data.class_names),
        "dataset": {"name": data.name, "fingerprint": data.info.get("fingerprint")},
        "training": {
            "recipe": recipe.to_dict(),
            "seed": seed,
            "excluded_classes": [data.class_names[c] for c in exclude],
            "num_train_samples": int(len(indices)),
            "loss_history": history,
            "seconds": seconds,
            "world_size": distributed.world_size(),
            "per_rank_batch_size": distributed.per_rank_batch_size(recipe.batch_size),
        },
        "environment": environment_stamp(),
    }
    return ClassifierCheckpoint(model, preprocessor, config, compute_prototypes(model, store, indices))
