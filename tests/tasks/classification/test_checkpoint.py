"""Classifier checkpoints: round trip with prototypes and the stored Fisher; other kinds refused."""

from __future__ import annotations

import pytest
import torch

from crossforget.core.checkpoint import Checkpoint, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.tasks.classification.checkpoint import load_classifier_checkpoint, save_classifier_checkpoint
from crossforget.tasks.classification.evaluation import predict
from crossforget.tasks.classification.task import attach_full_fisher


def test_checkpoint_round_trip(tiny, tmp_path):
    data, store, saved = tiny
    attach_full_fisher(saved, store, data.train[:64])
    save_classifier_checkpoint(tmp_path / "ck", saved)
    loaded = load_classifier_checkpoint(tmp_path / "ck")
    assert loaded.config["kind"] == "classifier"
    assert torch.equal(predict(loaded.model, store, data.test), predict(saved.model, store, data.test))
    assert torch.equal(loaded.prototypes, saved.prototypes)
    assert set(loaded.fisher) == {n for n, _ in saved.model.named_parameters()}
    save_checkpoint(tmp_path / "hash", Checkpoint({"kind": "hashing"}, {"w": torch.zeros(1)}))
    with pytest.raises(CrossforgetError, match="not a classifier"):
        load_classifier_checkpoint(tmp_path / "hash")
