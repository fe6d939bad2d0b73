"""The co-occurrence floor: exact expected AP under ties, and the retained-label oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.metrics.oracle_floor import label_oracle_map, tied_ranking_ap
from crossforget.metrics.retrieval import random_ranking_map


def _brute_force_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Mean AP over every order that respects descending scores (each tie order equally likely)."""
    aps = []
    for order in itertools.permutations(range(scores.size)):
        ranked = np.asarray(order)
        if np.any(np.diff(scores[ranked]) > 0):
            continue
        hits = relevant[ranked]
        if not hits.any():
            aps.append(0.0)
            continue
        precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
        aps.append(float(precision[hits].mean()))
    return float(np.mean(aps))


def test_hand_computed_example():
    # Item 0 first (not relevant); items 1 (relevant) and 2 tie; item 3 (relevant) last.
    # Orders: 0,1,2,3 gives AP (1/2 + 2/4) / 2 = 1/2; 0,2,1,3 gives (1/3 + 2/4) / 2 = 5/12; mean 11/24.
    assert tied_ranking_ap(np.array([2, 1, 1, 0]), np.array([0, 1, 0, 1], bool)) == pytest.approx(11 / 24)


def test_matches_enumerating_every_tie_order():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 3, size=6)
        relevant = rng.random(6) < 0.4
        assert tied_ranking_ap(scores, relevant) == pytest.approx(_brute_force_ap(scores, relevant))


def test_no_relevant_item_scores_zero_and_shapes_are_checked():
    assert tied_ranking_ap(np.array([1, 0]), np.array([False, False])) == 0.0
    with pytest.raises(CrossforgetError, match="same length"):
        tied_ranking_ap(np.array([1, 0]), np.array([True]))


def test_oracle_without_retained_labels_is_chance():
    """A query carrying only the forget class ties every database item: the floor is exact chance."""
    rng = np.random.default_rng(1)
    db = (rng.random((40, 5)) < 0.3).astype(np.uint8)
    query = np.array([[1, 0, 0, 0, 0]], dtype=np.uint8)
    expected = random_ranking_map(query[:, [0]], db[:, [0]])
    assert label_oracle_map(query, db, [0]) == pytest.approx(expected)


def test_oracle_follows_co_occurrence():
    """When the forget class always comes with retained class 1, the oracle retrieves it first."""
    db = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]], dtype=np.uint8)
    query = np.array([[1, 1, 0]], dtype=np.uint8)
    # Shared retained labels: 1, 1, 0, 0, 1 -> the three items with class 1 tie first; two of them are
    # relevant: E[AP] by the closed form equals the enumeration.
    shared = np.array([1, 1, 0, 0, 1])
    relevant = db[:, 0].astype(bool)
    assert label_oracle_map(query, db, [0]) == pytest.approx(_brute_force_ap(shared, relevant))
    assert label_oracle_map(query, db, [0]) > random_ranking_map(query[:, [0]], db[:, [0]])


def test_oracle_scores_one_forget_class_without_ranking_on_the_other():
    """Forget classes 0 and 1; relevance on class 0 only; class 1 never enters the ranking."""
    db = np.array([[1, 1, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 0]], dtype=np.uint8)
    query = np.array([[1, 1, 0, 1]], dtype=np.uint8)
    shared = np.array([1, 1, 0, 0])  # retained classes 2 and 3: only class 3 is shared
    expected = _brute_force_ap(shared, db[:, 0].astype(bool))
    assert label_oracle_map(query, db, [0, 1], [0]) == pytest.approx(expected)
    both = _brute_force_ap(shared, db[:, [0, 1]].any(axis=1))
    assert label_oracle_map(query, db, [0, 1]) == pytest.approx(both)
    with pytest.raises(CrossforgetError, match="subset"):
        label_oracle_map(query, db, [0], [1])
