"""Cross-entropy on classifiers: per-sample values and label checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from crossforget.core.errors import CrossforgetError
from crossforget.losses.classification import CrossEntropyLoss
from crossforget.models.classifier import build_classifier, classifier_config


def test_cross_entropy_per_sample_equals_single_sample_batches():
    model, _ = build_classifier(classifier_config("resnet-small", 4, 32))
    batch = {"images": torch.randn(5, 3, 32, 32), "labels": torch.tensor([0, 1, 2, 3, 1])}
    loss = CrossEntropyLoss()
    per_sample = loss(model, batch, reduction="none")
    singles = [loss(model, {k: v[i : i + 1] for k, v in batch.items()}) for i in range(5)]
    assert torch.allclose(per_sample, torch.stack(singles), atol=1e-5)
    assert torch.allclose(loss(model, batch), F.cross_entropy(model(batch["images"]), batch["labels"]))
    with pytest.raises(CrossforgetError, match="class indices"):
        loss(model, {"images": batch["images"], "labels": torch.zeros(5, 4)})
