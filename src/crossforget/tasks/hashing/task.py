"""Bind a hashing checkpoint and its data to the method protocol (``UnlearningTask``)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from torch import nn

from crossforget.core.device import module_device
from crossforget.core.reproducibility import seed_everything
from crossforget.data.forget import ForgetRequest, partition
from crossforget.engine.training import TrainingRecipe, train_model
from crossforget.losses.base import ModelLoss
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import BatchSource, iterate_batches
from crossforget.tasks import adapters
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint
from crossforget.tasks.hashing.probe import hashing_probe
from crossforget.tasks.hashing.training import LoadedData, compute_prototypes, initial_model
from crossforget.unlearning.methods.base import (
    UnlearningMethod,
    UnlearningTask,
    UnlearnResult,
    stored_fisher_record,
)


def store_for(saved: HashingCheckpoint, loaded: LoadedData) -> BatchSource:
    """The batch store for this checkpoint's inputs, reused across bit lengths, on the model's device."""
    return loaded.store_for(saved.preprocessor, module_device(saved.model))


def _fixed_proxies(loss: DSPHLoss) -> DSPHLoss:
    fixed = copy.deepcopy(loss)
    fixed.proxies.requires_grad_(False)
    return fixed


def _codes(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Image and text codes side by side, (B, 2b): what Bad Teacher distils on hashing models."""
    image, text = model(batch)
    return torch.cat([image, text], dim=1)


def _code_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared difference of real-valued codes (our extension of Bad Teacher to hashing).

    Codes carry no class distribution to take a KL divergence of; matching the teacher's codes is the
    direct analogue of matching its outputs.
    """
    return (student - teacher.detach()).square().mean(dim=1)


class _RelabelledStore:
    """A batch source that serves ``labels`` instead of the store's labels (Amnesiac's wrong labels)."""

    def __init__(self, store: BatchSource, labels: torch.Tensor) -> None:
        self.store, self.labels, self.num_captions = store, labels, store.num_captions

    def __len__(self) -> int:
        return len(self.store)

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch = self.store.batch(indices, caption)
        return {**batch, "labels": self.labels[indices].to(batch["labels"].device)}


def _recipe(saved: HashingCheckpoint) -> TrainingRecipe:
    return TrainingRecipe.from_dict(saved.config["training"]["recipe"])


def _fit_recipe(saved: HashingCheckpoint, fresh: bool, epochs: int, lr_scale: float) -> TrainingRecipe:
    """Retrain and Finetune: the training recipe with both learning rates scaled by ``lr_scale``."""
    recipe = _recipe(saved)
    return dataclasses.replace(
        recipe, epochs=epochs, encoder_lr=recipe.encoder_lr * lr_scale, head_lr=recipe.head_lr * lr_scale
    )


def _fit_loss(saved: HashingCheckpoint, fresh: bool, seed: int, model: nn.Module) -> DSPHLoss:
    """Retrain: new proxies (seeded); Finetune: the trained proxies, trainable again."""
    if fresh:
        seed_everything(seed)
        loss = DSPHLoss(saved.loss.num_classes, saved.loss.bits, saved.loss.margin, saved.loss.alpha_reg)
    else:
        loss = copy.deepcopy(saved.loss)
        loss.proxies.requires_grad_(True)
    return loss.to(module_device(model))


def _adapters(saved: HashingCheckpoint, store: BatchSource, train: np.ndarray) -> adapters.TrackAdapters:
    config = saved.config["model"]

    def build(pretrained: bool) -> nn.Module:
        return (initial_model(config) if pretrained else build_hasher(config))[0]

    def fit(
        model: nn.Module, loss: ModelLoss, indices: np.ndarray, recipe: TrainingRecipe, seed: int, fresh: bool
    ) -> None:
        train_model(model, loss, store, indices, recipe, seed, description="training")

    def relabelled(
        model: nn.Module, indices: np.ndarray, labels: torch.Tensor, recipe: TrainingRecipe, seed: int
    ) -> None:
        """Proxies stay fixed; ``labels`` replace the rows of ``indices`` in the label table."""
        table = store.labels.clone()
        table[torch.as_tensor(indices, dtype=torch.long, device=table.device)] = labels.to(table)
        loss = _fixed_proxies(saved.loss).to(module_device(model))
        relabelled_store = _RelabelledStore(store, table)
        train_model(
            model,
            loss,
            relabelled_store,
            indices,
            recipe,
            seed,
            description="relabelled",
            show_progress=False,
        )

    return adapters.TrackAdapters(
        build=build,
        pretrained=bool(config.get("pretrained", False)),
        head_names=lambda model: [
            n for n in model.state_dict() if n.startswith(("image_head.", "text_head."))
        ],
        fit_recipe=lambda fresh, epochs, lr_scale: _fit_recipe(saved, fresh, epochs, lr_scale),
        relabel_recipe=lambda epochs, lr, batch_size: dataclasses.replace(
            _recipe(saved), epochs=epochs, batch_size=batch_size, encoder_lr=lr, head_lr=lr
        ),
        fit_loss=lambda fresh, seed, model: _fit_loss(saved, fresh, seed, model),
        train=fit,
        train_relabelled=relabelled,
        prototypes=lambda: saved.prototypes or compute_prototypes(saved.model, store, train),
        device=module_device(saved.model),
    )


def hashing_task(saved: HashingCheckpoint, loaded: LoadedData, request: ForgetRequest) -> UnlearningTask:
    loaded.check(saved.config, f"the {saved.bits}-bit checkpoint")
    store = store_for(saved, loaded)
    part = partition(loaded.data, loaded.split, request)
    return _adapters(saved, store, loaded.split.train).task(
        loss=_fixed_proxies(saved.loss),
        batches=lambda indices, size: iterate_batches(store, indices, size),
        labels=store.labels,
        train_forget=part.train_forget,
        train_retain=part.train_retain,
        forget_classes=list(part.forget_classes),
        class_names=saved.class_names,
        stored_fisher=saved.fisher or None,
        stored_fisher_info=stored_fisher_record(saved.config, saved.fisher),
        training_epochs=int(saved.config["training"]["recipe"]["epochs"]),
        outputs=_codes,
        distillation_loss=_code_mse,
        probe=hashing_probe(store, loaded.split, part),
    )


def attach_full_fisher(saved: HashingCheckpoint, loaded: LoadedData) -> None:
    """Store the full-training-set Fisher (batch estimator) so SSD can skip that pass later."""
    store = store_for(saved, loaded)
    adapters.attach_full_fisher(
        saved,
        _fixed_proxies(saved.loss),
        lambda rows, size: iterate_batches(store, rows, size),
        loaded.split.train,
        progress="full-data Fisher",
    )


def run_method(
    method: UnlearningMethod, saved: HashingCheckpoint, loaded: LoadedData, request: ForgetRequest, seed: int
) -> tuple[HashingCheckpoint, UnlearnResult]:
    """Run a method and wrap its model as a new checkpoint whose config records the lineage."""
    task = hashing_task(saved, loaded, request)
    result = method.unlearn(saved.model, task, seed)
    config = copy.deepcopy(saved.config)
    config["unlearning"] = {
        "method": method.name,
        "options": dataclasses.asdict(method.options),
        "forget": list(request.classes),
        "seed": seed,
        "timings": result.timings,
        "parent": saved.config.get("unlearning"),
    }
    new = HashingCheckpoint(result.model, saved.loss, saved.preprocessor, config, saved.prototypes, {})
    return new, result
