"""Bind a hashing checkpoint and its data to the method protocol (``UnlearningTask``)."""

from __future__ import annotations

import copy
import dataclasses
from functools import partial

import numpy as np
import torch
from torch import nn

from crossforget.core import distributed
from crossforget.core.device import module_device
from crossforget.core.reproducibility import seed_everything
from crossforget.data.forget import ForgetRequest, partition
from crossforget.engine.training import TrainingRecipe, train_model
from crossforget.losses.base import ModelLoss
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import BatchSource, iterate_batches
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint
from crossforget.tasks.hashing.probe import hashing_probe
from crossforget.tasks.hashing.training import LoadedData, compute_prototypes, initial_model
from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import (
    UnlearningMethod,
    UnlearningTask,
    UnlearnResult,
    stored_fisher_record,
)

STORED_FISHER_BATCH = 32


def store_for(saved: HashingCheckpoint, loaded: LoadedData) -> BatchSource:
    """The batch store for this checkpoint's inputs, reused across bit lengths, on the model's device."""
    return loaded.store_for(saved.preprocessor, module_device(saved.model))


def _fixed_proxies(loss: DSPHLoss) -> DSPHLoss:
    fixed = copy.deepcopy(loss)
    fixed.proxies.requires_grad_(False)
    return fixed


def _fit(
    saved: HashingCheckpoint,
    store: BatchSource,
    model: nn.Module,
    indices: np.ndarray,
    epochs: int,
    seed: int,
    fresh_loss: bool,
    lr_scale: float,
) -> ModelLoss:
    recipe = TrainingRecipe.from_dict(saved.config["training"]["recipe"])
    recipe = dataclasses.replace(
        recipe, epochs=epochs, encoder_lr=recipe.encoder_lr * lr_scale, head_lr=recipe.head_lr * lr_scale
    )
    if fresh_loss:
        seed_everything(seed)
        loss = DSPHLoss(saved.loss.num_classes, saved.loss.bits, saved.loss.margin, saved.loss.alpha_reg)
    else:
        loss = copy.deepcopy(saved.loss)
        loss.proxies.requires_grad_(True)
    loss.to(module_device(model))
    train_model(model, loss, store, indices, recipe, seed, description="training")
    return loss


def _fresh(saved: HashingCheckpoint, seed: int) -> nn.Module:
    """A model as training starts it (pretrained CLIP weights included), on the checkpoint's device."""
    seed_everything(seed)
    model, _ = initial_model(saved.config["model"])
    model.to(module_device(saved.model))
    model.eval()
    return model


def _random(saved: HashingCheckpoint, seed: int) -> nn.Module:
    """The architecture with random weights everywhere (no pretrained CLIP), on the checkpoint's device."""
    seed_everything(seed)
    model, _ = build_hasher(saved.config["model"])
    model.to(module_device(saved.model))
    model.eval()
    return model


def _reinit_names(saved: HashingCheckpoint, model: nn.Module) -> list[str]:
    """What Bad model re-initialises: everything trained from scratch."""
    names = list(model.state_dict())
    if saved.config["model"].get("pretrained", False):
        return [n for n in names if n.startswith(("image_head.", "text_head."))]
    return names


def _prototypes(
    saved: HashingCheckpoint, store: BatchSource, train: np.ndarray, modality: str
) -> torch.Tensor:
    protos = saved.prototypes or compute_prototypes(saved.model, store, train)
    if modality == "both":
        return (protos["image"] + protos["text"]) / 2
    return protos[modality]


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


def _fit_relabelled(
    saved: HashingCheckpoint,
    store: BatchSource,
    model: nn.Module,
    indices: np.ndarray,
    labels: torch.Tensor,
    epochs: int,
    seed: int,
    lr: float,
    batch_size: int,
) -> None:
    """The training recipe at learning rate ``lr`` on ``indices`` labelled ``labels``; proxies stay fixed."""
    table = store.labels.clone()
    table[torch.as_tensor(indices, dtype=torch.long, device=table.device)] = labels.to(table)
    recipe = TrainingRecipe.from_dict(saved.config["training"]["recipe"])
    recipe = dataclasses.replace(recipe, epochs=epochs, batch_size=batch_size, encoder_lr=lr, head_lr=lr)
    loss = _fixed_proxies(saved.loss).to(module_device(model))
    train_model(
        model,
        loss,
        _RelabelledStore(store, table),
        indices,
        recipe,
        seed,
        description="relabelled",
        show_progress=False,
    )


def hashing_task(saved: HashingCheckpoint, loaded: LoadedData, request: ForgetRequest) -> UnlearningTask:
    loaded.check(saved.config, f"the {saved.bits}-bit checkpoint")
    store = store_for(saved, loaded)
    part = partition(loaded.data, loaded.split, request)
    return UnlearningTask(
        loss=_fixed_proxies(saved.loss),
        batches=lambda indices, size: iterate_batches(store, indices, size),
        labels=store.labels,
        train_forget=part.train_forget,
        train_retain=part.train_retain,
        forget_classes=list(part.forget_classes),
        class_names=saved.class_names,
        fit=partial(_fit, saved, store),
        fresh_model=partial(_fresh, saved),
        reinit_names=partial(_reinit_names, saved),
        prototypes=partial(_prototypes, saved, store, loaded.split.train),
        stored_fisher=saved.fisher or None,
        stored_fisher_info=stored_fisher_record(saved.config, saved.fisher),
        training_epochs=int(saved.config["training"]["recipe"]["epochs"]),
        outputs=_codes,
        distillation_loss=_code_mse,
        fit_relabelled=partial(_fit_relabelled, saved, store),
        probe=hashing_probe(store, loaded.split, part),
        random_model=partial(_random, saved),
    )


def attach_full_fisher(saved: HashingCheckpoint, loaded: LoadedData) -> None:
    """Store the full-training-set Fisher (batch estimator) so SSD can skip that pass later."""
    store = store_for(saved, loaded)
    sharded = distributed.is_active()  # under torchrun: a block of whole batches per rank
    train = loaded.split.train
    if sharded:
        train = distributed.shard_batches(train, STORED_FISHER_BATCH)
    fisher = diagonal_fisher(
        saved.model,
        _fixed_proxies(saved.loss),
        iterate_batches(store, train, STORED_FISHER_BATCH),
        estimator="batch",
        progress="full-data Fisher",
        sharded=sharded,
    )
    saved.fisher = fisher
    saved.config["stored_fisher"] = {
        "estimator": "batch",
        "batch_size": STORED_FISHER_BATCH,
        "samples": int(loaded.split.train.size),
    }


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
