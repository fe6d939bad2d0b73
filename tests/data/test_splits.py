"""The stratified train/test split of single-label data."""

from __future__ import annotations

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.splits import stratified_split


def test_stratified_split_by_hand():
    targets = np.array([0] * 10 + [1] * 5 + [2])
    train, test = stratified_split(targets, 0.2, seed=1)
    assert np.bincount(targets[test], minlength=3).tolist() == [2, 1, 0]  # the singleton stays in training
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(16))
    assert np.array_equal(stratified_split(targets, 0.2, seed=1)[1], test)
    with pytest.raises(CrossforgetError, match="between 0 and 1"):
        stratified_split(targets, 1.0, seed=1)
