"""Splits and forget requests."""

from __future__ import annotations

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import MultiModalData
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.splits import make_split


def test_split_follows_the_dsph_protocol():
    split = make_split(100, 10, 30, seed=3)
    assert split.query.size == 10 and split.train.size == 30 and split.database.size == 90
    assert not set(split.query) & set(split.database)
    assert set(split.train) <= set(split.database)
    again = make_split(100, 10, 30, seed=3)
    assert np.array_equal(split.query, again.query) and np.array_equal(split.train, again.train)
    with pytest.raises(CrossforgetError, match="lower"):
        make_split(100, 80, 30, seed=0)


def _data() -> MultiModalData:
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1]], dtype=np.uint8)
    return MultiModalData("toy", ["dog", "cat", "car"], labels, [["x"]] * 6, None)


def test_partition_by_any_forget_label():
    data = _data()
    split = make_split(6, 2, 4, seed=0)
    part = partition(data, split, ForgetRequest(["Dog"]))
    for i in part.train_forget:
        assert data.labels[i, 0] == 1
    for i in part.train_retain:
        assert data.labels[i, 0] == 0
    assert sorted([*part.train_forget, *part.train_retain]) == sorted(split.train)
    assert sorted([*part.query_forget, *part.query_retain]) == sorted(split.query)


def test_bad_requests_have_clear_errors():
    data = _data()
    split = make_split(6, 2, 4, seed=0)
    with pytest.raises(CrossforgetError, match="valid classes: dog, cat, car"):
        partition(data, split, ForgetRequest(["zebra"]))
    with pytest.raises(CrossforgetError, match="every class"):
        partition(data, split, ForgetRequest(["dog", "cat", "car"]))
    with pytest.raises(CrossforgetError, match="at least one class"):
        ForgetRequest([" "])
    split = make_split(3, 1, 2, seed=0)
    labels = np.array([[0, 1]] * 3, dtype=np.uint8)
    labels[split.query[0]] = [1, 0]  # dog only among the queries
    only_query = MultiModalData("toy", ["dog", "cat"], labels, [["x"]] * 3, None)
    with pytest.raises(CrossforgetError, match="no training sample"):
        partition(only_query, split, ForgetRequest(["dog"]))
