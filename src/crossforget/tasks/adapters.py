"""The model-specific pieces of ``UnlearningTask`` (fit, relabelled fit, fresh and random models, the
names Bad model re-initialises, prototypes, the stored Fisher), written once for both tracks.

A track supplies only what differs: how to build its model, its recipes for Retrain / Finetune /
relabelled training, the loss it trains with, how it trains and where its prototypes come from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from crossforget.core import distributed
from crossforget.core.reproducibility import seed_everything
from crossforget.losses.base import Batch, ModelLoss
from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import UnlearningTask

STORED_FISHER_BATCH = 32  # batch of the stored full-training-set Fisher (the batch estimator's unit)

Prototypes = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class TrackAdapters:
    """One track's training and model pieces, bound into the ``UnlearningTask`` callables.

    ``build(pretrained)``: a new model, with the pretrained weights training starts from or random
    everywhere; ``pretrained``: whether the backbone starts pretrained (Bad model then re-initialises
    only ``head_names(model)``); ``device``: where new models go (None: where ``build`` puts them).
    ``fit_recipe(fresh, epochs, lr_scale)`` / ``relabel_recipe(epochs, lr, batch_size)``: the recipes
    of Retrain (fresh) or Finetune, and of relabelled training; ``fit_loss(fresh, seed, model)``: the
    loss ``fit`` trains with and returns; ``train(model, loss, indices, recipe, seed, fresh)`` and
    ``train_relabelled(model, indices, labels, recipe, seed)`` train in place; ``prototypes()``: the
    class prototypes (one tensor, or one per modality).
    """

    build: Callable[[bool], nn.Module]
    pretrained: bool
    head_names: Callable[[nn.Module], list[str]]
    fit_recipe: Callable[[bool, int, float], Any]
    relabel_recipe: Callable[[int, float, int], Any]
    fit_loss: Callable[[bool, int, nn.Module], ModelLoss]
    train: Callable[[nn.Module, ModelLoss, np.ndarray, Any, int, bool], object]
    train_relabelled: Callable[[nn.Module, np.ndarray, torch.Tensor, Any, int], object]
    prototypes: Callable[[], Prototypes]
    device: torch.device | None = None

    def fit(
        self, model: nn.Module, indices: np.ndarray, epochs: int, seed: int, fresh_loss: bool, lr_scale: float
    ) -> ModelLoss:
        """Retrain (``fresh_loss``: from scratch, the Original's recipe) or Finetune ``model`` in place."""
        recipe = self.fit_recipe(fresh_loss, epochs, lr_scale)
        loss = self.fit_loss(fresh_loss, seed, model)
        self.train(model, loss, indices, recipe, seed, fresh_loss)
        return loss

    def fit_relabelled(
        self,
        model: nn.Module,
        indices: np.ndarray,
        labels: torch.Tensor,
        epochs: int,
        seed: int,
        lr: float,
        batch_size: int,
    ) -> None:
        """Train ``model`` in place on ``indices`` labelled by the rows of ``labels`` (Amnesiac)."""
        self.train_relabelled(model, indices, labels, self.relabel_recipe(epochs, lr, batch_size), seed)

    def fresh_model(self, seed: int) -> nn.Module:
        """A model as training starts it (pretrained weights included)."""
        return self._new(seed, pretrained=True)

    def random_model(self, seed: int) -> nn.Module:
        """The architecture with random weights everywhere, pretrained backbone or not (SPEC section 5)."""
        return self._new(seed, pretrained=False)

    def _new(self, seed: int, pretrained: bool) -> nn.Module:
        seed_everything(seed)
        model = self.build(pretrained)
        if self.device is not None:
            model.to(self.device)
        model.eval()
        return model

    def reinit_names(self, model: nn.Module) -> list[str]:
        """Bad model re-initialises what was trained from scratch: the heads only on a pretrained backbone."""
        return self.head_names(model) if self.pretrained else list(model.state_dict())

    def modality_prototypes(self, modality: str) -> torch.Tensor:
        """The prototypes of ``modality`` ("image", "text" or "both": their mean); one-modality tracks
        have one set, whatever ``modality``."""
        found = self.prototypes()
        if isinstance(found, torch.Tensor):
            return found
        if modality == "both":
            return (found["image"] + found["text"]) / 2
        return found[modality]

    def task(self, **fields: Any) -> UnlearningTask:
        """The ``UnlearningTask`` with these adapters and the track's data ``fields`` (loss, batches, ...)."""
        bound = {
            "fit": self.fit,
            "fresh_model": self.fresh_model,
            "reinit_names": self.reinit_names,
            "prototypes": self.modality_prototypes,
            "fit_relabelled": self.fit_relabelled,
            "random_model": self.random_model,
        }
        return UnlearningTask(**bound, **fields)


class FisherHolder(Protocol):
    """A checkpoint that can carry a stored Fisher (both tracks' checkpoints)."""

    model: nn.Module
    config: dict
    fisher: dict[str, torch.Tensor]


def attach_full_fisher(
    saved: FisherHolder,
    loss: ModelLoss,
    batches: Callable[[np.ndarray, int], Iterable[Batch]],
    indices: np.ndarray,
    progress: str | None = None,
) -> None:
    """Store the full-training-set Fisher (batch estimator) so SSD skips that pass on every seed."""
    sharded = distributed.is_active()  # under torchrun: a block of whole batches per rank
    local = distributed.shard_batches(indices, STORED_FISHER_BATCH) if sharded else indices
    saved.fisher = diagonal_fisher(
        saved.model,
        loss,
        batches(local, STORED_FISHER_BATCH),
        estimator="batch",
        progress=progress,
        sharded=sharded,
    )
    saved.config["stored_fisher"] = {
        "estimator": "batch",
        "batch_size": STORED_FISHER_BATCH,
        "samples": int(len(indices)),
    }
