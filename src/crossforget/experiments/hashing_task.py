"""Bind a hashing checkpoint and its data to the method protocol (``UnlearningTask``)."""

from __future__ import annotations

import copy
import dataclasses
from functools import partial

import numpy as np
import torch
from torch import nn

from crossforget.data.forget import ForgetRequest, partition
from crossforget.experiments.training_run import LoadedData, compute_prototypes
from crossforget.losses.base import ModelLoss
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import TensorStore, iterate_batches
from crossforget.models.persist import HashingCheckpoint
from crossforget.reproducibility import seed_everything
from crossforget.training import TrainingRecipe, train_model
from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import UnlearningMethod, UnlearningTask, UnlearnResult

STORED_FISHER_BATCH = 32


def store_for(saved: HashingCheckpoint, loaded: LoadedData) -> TensorStore:
    """The tensor store for this checkpoint's preprocessor, reused across bit lengths."""
    if loaded.store is None or loaded.store.preprocessor.to_config() != saved.preprocessor.to_config():
        loaded.store = TensorStore(loaded.data, saved.preprocessor)
    return loaded.store


def _fixed_proxies(loss: DSPHLoss) -> DSPHLoss:
    fixed = copy.deepcopy(loss)
    fixed.proxies.requires_grad_(False)
    return fixed


def _fit(saved: HashingCheckpoint, store: TensorStore, model: nn.Module, indices: np.ndarray, epochs: int,
         seed: int, fresh_loss: bool, lr_scale: float) -> ModelLoss:
    recipe = TrainingRecipe.from_dict(saved.config["training"]["recipe"])
    recipe = dataclasses.replace(recipe, epochs=epochs, encoder_lr=recipe.encoder_lr * lr_scale,
                                 head_lr=recipe.head_lr * lr_scale)
    if fresh_loss:
        seed_everything(seed)
        loss = DSPHLoss(saved.loss.num_classes, saved.loss.bits, saved.loss.margin, saved.loss.alpha_reg)
    else:
        loss = copy.deepcopy(saved.loss)
        loss.proxies.requires_grad_(True)
    train_model(model, loss, store, indices, recipe, seed, description="training")
    return loss


def _fresh(saved: HashingCheckpoint, seed: int) -> nn.Module:
    seed_everything(seed)
    model, _ = build_hasher(saved.config["model"])
    model.eval()
    return model


def _reinit_names(saved: HashingCheckpoint, model: nn.Module) -> list[str]:
    """What Bad model re-initialises: everything trained from scratch."""
    names = list(model.state_dict())
    if saved.config["model"].get("pretrained", False):
        return [n for n in names if n.startswith(("image_head.", "text_head."))]
    return names


def _prototypes(saved: HashingCheckpoint, store: TensorStore, train: np.ndarray, modality: str) -> torch.Tensor:
    protos = saved.prototypes or compute_prototypes(saved.model, store, train)
    if modality == "both":
        return (protos["image"] + protos["text"]) / 2
    return protos[modality]


def hashing_task(saved: HashingCheckpoint, loaded: LoadedData, request: ForgetRequest) -> UnlearningTask:
    store = store_for(saved, loaded)
    part = partition(loaded.data, loaded.split, request)
    fisher_meta = saved.config.get("stored_fisher", {})
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
        stored_fisher=saved.fisher if saved.fisher and fisher_meta.get("estimator") == "batch" else None,
        training_epochs=int(saved.config["training"]["recipe"]["epochs"]),
    )


def attach_full_fisher(saved: HashingCheckpoint, loaded: LoadedData) -> None:
    """Store the full-training-set Fisher (batch estimator) so SSD can skip that pass later."""
    store = store_for(saved, loaded)
    fisher = diagonal_fisher(saved.model, _fixed_proxies(saved.loss),
                             iterate_batches(store, loaded.split.train, STORED_FISHER_BATCH),
                             estimator="batch", progress="full-data Fisher")
    saved.fisher = fisher
    saved.config["stored_fisher"] = {"estimator": "batch", "batch_size": STORED_FISHER_BATCH,
                                     "samples": int(loaded.split.train.size)}


def run_method(method: UnlearningMethod, saved: HashingCheckpoint, loaded: LoadedData, request: ForgetRequest,
               seed: int) -> tuple[HashingCheckpoint, UnlearnResult]:
    """Run a method and wrap its model as a new checkpoint whose config records the lineage."""
    task = hashing_task(saved, loaded, request)
    result = method.unlearn(saved.model, task, seed)
    config = copy.deepcopy(saved.config)
    config["unlearning"] = {"method": method.name, "options": dataclasses.asdict(method.options),
                            "forget": list(request.classes), "seed": seed, "timings": result.timings,
                            "parent": saved.config.get("unlearning")}
    new = HashingCheckpoint(result.model, saved.loss, saved.preprocessor, config, saved.prototypes, {})
    return new, result
