"""Table 1's numbers for one classifier: forget / retain accuracy and the membership attacks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from crossforget.core import distributed
from crossforget.data.container import SingleLabelData
from crossforget.metrics.classification import forget_retain_accuracy
from crossforget.metrics.keys import (
    FORGET_ACC,
    FORGET_ACC_TRAIN,
    MIA,
    MIA_SHADOW,
    RETAIN_ACC,
    RETAIN_ACC_TRAIN,
)
from crossforget.metrics.mia import ShadowAttack, entropy_mia
from crossforget.models.classifier import ImageClassifier
from crossforget.tasks.classification.store import ImageStore, classifier_batches, forget_split

EVAL_BATCH = 256


@torch.no_grad()
def predict(model: ImageClassifier, store: ImageStore, indices: np.ndarray) -> torch.Tensor:
    """Logits (n, C) in eval mode (under torchrun: each rank a block of whole batches, gathered)."""
    model.eval()
    if distributed.is_active():
        local = distributed.shard_batches(indices, EVAL_BATCH)
        out = [model(b["images"]) for b in classifier_batches(store, local, EVAL_BATCH)]
        return distributed.gather_rows(torch.cat(out) if out else torch.empty(0, model.num_classes))
    out = [model(b["images"]) for b in classifier_batches(store, indices, EVAL_BATCH)]
    return torch.cat(out) if out else torch.empty(0, model.num_classes)


@torch.no_grad()
def penultimate_features(model: ImageClassifier, store: ImageStore, indices: np.ndarray) -> torch.Tensor:
    model.eval()
    if distributed.is_active():
        local = distributed.shard_batches(indices, EVAL_BATCH)
        out = [model.features(b["images"]) for b in classifier_batches(store, local, EVAL_BATCH)]
        return distributed.gather_rows(torch.cat(out) if out else None)
    return torch.cat([model.features(b["images"]) for b in classifier_batches(store, indices, EVAL_BATCH)])


def evaluate_classifier(
    model: ImageClassifier,
    store: ImageStore,
    data: SingleLabelData,
    forget_classes: Sequence[int],
    shadow: ShadowAttack | None = None,
) -> dict:
    """Table 1's numbers for one model, all in [0, 1].

    ``forget_acc`` / ``retain_acc``: test-split accuracy on the forget classes (D_f) and the others
    (D_r), as in the SSD code; the ``*_train`` variants use the training split. ``mia``: the entropy
    attack's mean membership of the forget training samples; ``mia_shadow``: the shadow-model attack's.
    """
    train_forget, train_retain = forget_split(data, forget_classes)
    logits_train = predict(model, store, data.train)
    logits_test = predict(model, store, data.test)
    rows_forget = torch.from_numpy(np.searchsorted(data.train, train_forget))  # data.train is sorted
    rows_retain = torch.from_numpy(np.searchsorted(data.train, train_retain))
    test = forget_retain_accuracy(logits_test, store.targets[torch.from_numpy(data.test)], forget_classes)
    train = forget_retain_accuracy(logits_train, store.targets[torch.from_numpy(data.train)], forget_classes)
    result = {
        FORGET_ACC: test["forget"],
        RETAIN_ACC: test["retain"],
        FORGET_ACC_TRAIN: train["forget"],
        RETAIN_ACC_TRAIN: train["retain"],
        MIA: entropy_mia(logits_train[rows_retain], logits_test, logits_train[rows_forget]),
    }
    if shadow is not None:
        result[MIA_SHADOW] = shadow.membership(
            logits_train[rows_forget], store.targets[torch.from_numpy(train_forget)]
        )
    return result
