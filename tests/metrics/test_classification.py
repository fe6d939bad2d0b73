"""Accuracy on D_f / D_r and softmax entropy, on hand-checkable inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crossforget.metrics.classification import (
    accuracy,
    forget_mask,
    forget_retain_accuracy,
    per_class_accuracy,
    softmax_entropy,
)

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
TARGETS = torch.tensor([0, 1, 1, 2, 1])  # predictions 0, 1, 2, 0, 1: rows 0, 1 and 4 are right


def test_accuracy_by_hand():
    assert accuracy(LOGITS, TARGETS) == pytest.approx(3 / 5)
    assert math.isnan(accuracy(LOGITS[:0], TARGETS[:0]))


def test_forget_and_retain_split_by_class():
    out = forget_retain_accuracy(LOGITS, TARGETS, [1])
    assert out["forget"] == pytest.approx(2 / 3)  # rows 1, 2, 4 are class 1; rows 1 and 4 right
    assert out["retain"] == pytest.approx(1 / 2)  # rows 0 (right) and 3 (wrong)
    assert (out["forget_samples"], out["retain_samples"]) == (3, 2)
    assert forget_mask(TARGETS, [0, 2]).tolist() == [True, False, False, True, False]


def test_per_class_accuracy_marks_missing_classes():
    acc = per_class_accuracy(LOGITS, TARGETS, num_classes=4)
    assert acc[:3] == pytest.approx([1.0, 2 / 3, 0.0])
    assert np.isnan(acc[3])


def test_entropy_of_known_distributions():
    uniform = torch.zeros(1, 4)
    assert softmax_entropy(uniform).item() == pytest.approx(math.log(4))
    p = torch.tensor([0.5, 0.25, 0.25])
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert softmax_entropy(p.log().unsqueeze(0)).item() == pytest.approx(expected)
    # an (almost) certain prediction has (almost) zero entropy, without NaN from 0 * log 0
    certain = torch.tensor([[0.0, -1e4, -1e4]])
    assert softmax_entropy(certain).item() == pytest.approx(0.0, abs=1e-12)
