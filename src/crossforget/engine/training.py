"""One training loop (``train_epochs``) for both tracks, and the hashing track's recipe and optimisers.

The loop trains the Original models and is reused by Retrain, Finetune and relabelled training; what a
track varies (optimisers, batches, schedule, mixed precision) comes in as arguments.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from crossforget.core import distributed
from crossforget.core.device import autocast, module_device
from crossforget.core.memory import keep_freed_memory
from crossforget.core.progress import progress_bar
from crossforget.core.reproducibility import seed_everything
from crossforget.losses.base import Batch
from crossforget.models.inputs import BatchSource, iterate_batches


@dataclass
class TrainingRecipe:
    """Optimiser and schedule (DSPH-style: AdamW, warm-up then cosine, gradient clipping).

    ``encoder_lr`` applies to the modality encoders, ``head_lr`` to the hash heads, and the DSPH
    proxies get their own SGD optimiser as in the reference implementation.
    """

    epochs: int = 30
    batch_size: int = 128
    encoder_lr: float = 2e-3
    head_lr: float = 2e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    proxy_lr: float = 0.02
    proxy_momentum: float = 0.9
    proxy_weight_decay: float = 5e-4
    augment: bool = True

    def to_dict(self) -> dict:
        # "extra" was a field no code set; it stays (empty) in the dict, which keys the reference
        # cache and checkpoint configs, so references trained before still hit the cache.
        return {**asdict(self), "extra": {}}

    @classmethod
    def from_dict(cls, values: dict) -> TrainingRecipe:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "betas" in known:
            known["betas"] = tuple(known["betas"])
        return cls(**known)


# DSPH's recipe for a pretrained CLIP backbone (SPEC section 3): small backbone lr, larger head lr,
# strong weight decay, no augmentation, 100 epochs. The small CPU backbone keeps the defaults above.
CLIP_RECIPE = TrainingRecipe(
    epochs=100, batch_size=128, encoder_lr=1e-5, head_lr=1e-3, weight_decay=0.2, augment=False
)
BACKBONE_RECIPES = {"clip": CLIP_RECIPE, "clip-features": CLIP_RECIPE}


def recipe_for(backbone: str) -> TrainingRecipe:
    """The default recipe of a backbone (a fresh copy, safe to modify)."""
    return copy.deepcopy(BACKBONE_RECIPES.get(backbone, TrainingRecipe()))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_count(num_samples: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of a run: the batches of one epoch (the last one may be short), times the epochs."""
    return math.ceil(num_samples / batch_size) * epochs


def _parameter_groups(model: nn.Module, recipe: TrainingRecipe) -> list[dict]:
    heads, encoders = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (heads if "head" in name.split(".")[0] else encoders).append(param)
    groups = []
    if encoders:
        groups.append({"params": encoders, "lr": recipe.encoder_lr, "base_lr": recipe.encoder_lr})
    if heads:
        groups.append({"params": heads, "lr": recipe.head_lr, "base_lr": recipe.head_lr})
    return groups


class TrainingOptimisers:
    """AdamW for the model, the proxies' own SGD, gradient clipping and the lr schedule: one step's update.

    CPU and CUDA use the fused AdamW kernel (one pass per parameter instead of a dozen elementwise ops,
    the same update up to float rounding) and the foreach norm for clipping, which matter for a small
    model whose step is otherwise dominated by per-parameter Python round-trips.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, recipe: TrainingRecipe) -> None:
        groups = _parameter_groups(model, recipe)
        self.params = [p for group in groups for p in group["params"]]
        self.grad_clip = recipe.grad_clip
        self.model = torch.optim.AdamW(
            groups,
            betas=recipe.betas,
            eps=recipe.eps,
            weight_decay=recipe.weight_decay,
            **_kernel_options(self.params),
        )
        loss_params = [p for p in loss.parameters() if p.requires_grad]
        self.loss = (
            torch.optim.SGD(
                loss_params,
                lr=recipe.proxy_lr,
                momentum=recipe.proxy_momentum,
                weight_decay=recipe.proxy_weight_decay,
            )
            if loss_params
            else None
        )
        self._foreach_clip = _fused_devices(self.params)

    def schedule(self, scale: float) -> None:
        """Set the model's learning rates to ``scale`` times their base values (the proxies' stays)."""
        for group in self.model.param_groups:
            group["lr"] = group["base_lr"] * scale

    def zero_grad(self) -> None:
        self.model.zero_grad(set_to_none=True)
        if self.loss is not None:
            self.loss.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Clip the model's gradient norm, then step both optimisers."""
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=self._foreach_clip or None)
        self.model.step()
        if self.loss is not None:
            self.loss.step()


def _fused_devices(params: list[torch.Tensor]) -> bool:
    """Whether every parameter is a float tensor on a device with torch's fused optimiser kernels."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def _kernel_options(params: list[torch.Tensor]) -> dict:
    return {"fused": True} if _fused_devices(params) else {}


class Optimisers(Protocol):
    """One training step's update: learning-rate schedule, gradient reset, parameter step."""

    def schedule(self, scale: float) -> None: ...

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...


Shard = tuple[int, int] | None  # (rank, world size) of a data-parallel run; None in one process


def train_epochs(
    model: nn.Module,
    loss: object,
    optimisers: Optimisers,
    batches: Callable[[Shard], Iterable[Batch]],
    epochs: int,
    schedule: Callable[[int], float],
    description: str = "training",
    show_progress: bool = True,
    mixed_precision: bool = True,
) -> list[float]:
    """Train ``model`` in place for ``epochs`` passes over ``batches(shard)``; the mean loss per epoch.

    Each step: ``optimisers.schedule(schedule(step))``, the loss (under bf16 autocast on CUDA when
    ``mixed_precision``), zero the gradients, backward, step. Under torchrun: DDP, this rank's rows of
    each global batch, the loss of the global batch; a run that raises in the loop ends every rank
    (torchrun), so the replica is closed on success only.
    """
    device = module_device(model)
    precision = (lambda: autocast(device)) if mixed_precision else contextlib.nullcontext
    history: list[float] = []
    step = 0
    model.train()
    replica = distributed.TrainingReplica(model, loss) if distributed.is_active() else None
    with progress_bar(description, total=epochs, enabled=show_progress) as bar:
        for _epoch in range(epochs):
            running, count = 0.0, 0
            for batch in batches(replica.position if replica is not None else None):
                optimisers.schedule(schedule(step))
                with precision():
                    value = loss(model, batch) if replica is None else replica.loss(loss, batch)
                optimisers.zero_grad()
                value.backward()
                if replica is not None:
                    replica.sync_loss_gradients()
                optimisers.step()
                running += float(value.detach())
                count += 1
                step += 1
            history.append(running / max(1, count))
            bar.advance(1, status=f"loss {history[-1]:.4f}")
    if replica is not None:
        replica.close()
    model.eval()
    return history


def train_model(
    model: nn.Module,
    loss: nn.Module,
    store: BatchSource,
    indices: np.ndarray,
    recipe: TrainingRecipe,
    seed: int,
    description: str = "training",
    show_progress: bool = True,
) -> list[float]:
    """Train a hashing ``model`` (and the loss's own parameters) in place; the mean loss per epoch.

    No model selection on the query set (the DSPH reference picks the best epoch on queries,
    which leaks test data). Runs where the model is (the store must place batches there); on CUDA
    the forward pass and loss run under bf16 autocast, weights and optimiser state stay float32.
    On glibc, freed memory is kept for the next step (``keep_freed_memory``, process-wide).
    """
    keep_freed_memory()
    generator = seed_everything(seed)
    optimisers = TrainingOptimisers(model, loss, recipe)
    total = step_count(len(indices), recipe.batch_size, recipe.epochs)
    warmup = int(recipe.warmup_fraction * total)

    def batches(shard: Shard) -> Iterable[Batch]:
        return iterate_batches(
            store,
            indices,
            recipe.batch_size,
            shuffle=True,
            generator=generator,
            random_caption=True,
            augment=recipe.augment,
            shard=shard,
        )

    return train_epochs(
        model,
        loss,
        optimisers,
        batches,
        recipe.epochs,
        lambda step: warmup_cosine(step, total, warmup),
        description,
        show_progress,
    )
