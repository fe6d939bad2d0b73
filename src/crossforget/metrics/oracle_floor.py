"""The forget-label mAP a model that never learnt the forget classes can still reach, by co-occurrence.

Chance (``random_ranking_map``) is the right floor only when the forget classes are independent of
the rest. In multi-label data they are not: a horse query also carries person and field, and a model
that never saw horse still ranks other person-and-field items first, many of which carry horse. Retrain
then scores far above chance, and a forgetting guard that demands chance over-forgets. The label
oracle is the best a forget-blind model can do by co-occurrence alone: it ranks the database by the
number of retained labels each item shares with the query, ties in random order, and scores the
ranking with forget-label relevance. Its expected AP has a closed form (below), so the floor is exact
and needs no sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crossforget.core.errors import CrossforgetError


def tied_ranking_ap(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Exact E[AP@all] of ranking items by descending ``scores`` with ties in uniformly random order.

    A relevant item in a tie group of n items, r of them relevant, after B items of which R_b are
    relevant, lands behind y = 0..n-1 group items with equal probability, and given y the expected
    number of relevant ones among them is y (r - 1) / (n - 1); precision is linear in that count, so
    E[precision] = (1/n) sum_y (R_b + 1 + y (r - 1) / (n - 1)) / (B + 1 + y). AP is the mean over the
    relevant items; 0 when none is relevant.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 1:
        raise CrossforgetError("scores and relevance must be 1-D arrays of the same length")
    total = int(relevant.sum())
    if total == 0:
        return 0.0
    values, inverse = np.unique(-scores, return_inverse=True)  # ascending -score: best group first
    sizes = np.bincount(inverse, minlength=values.size)
    hits = np.bincount(inverse, weights=relevant, minlength=values.size)
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    hits_before = np.concatenate([[0], np.cumsum(hits)[:-1]])
    expected = 0.0
    for n, r, b, rb in zip(sizes, hits, before, hits_before, strict=True):
        if r == 0:
            continue
        y = np.arange(n, dtype=np.float64)
        share = (r - 1) / (n - 1) if n > 1 else 0.0
        expected += r * float(np.mean((rb + 1 + y * share) / (b + 1 + y)))
    return expected / total


def label_oracle_map(
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    forget_classes: Sequence[int],
    relevant_classes: Sequence[int] | None = None,
) -> float:
    """Expected forget-label mAP of the retained-label oracle over the queries (see the module).

    ``relevant_classes``: the forget classes whose labels make an item relevant (default: all of
    them); a subset scores one class of a multi-class request, still ranked without any forget label.
    """
    query_labels = np.asarray(query_labels).astype(bool)
    db_labels = np.asarray(db_labels).astype(bool)
    if query_labels.shape[1] != db_labels.shape[1]:
        raise CrossforgetError("query and database labels must have the same number of classes")
    forget = np.zeros(query_labels.shape[1], dtype=bool)
    forget[list(forget_classes)] = True
    shared = query_labels[:, ~forget].astype(np.int64) @ db_labels[:, ~forget].T.astype(np.int64)
    scored = forget.copy()
    if relevant_classes is not None:
        scored = np.zeros_like(forget)
        scored[list(relevant_classes)] = True
    if not (scored <= forget).all():
        raise CrossforgetError("relevant_classes must be a subset of forget_classes")
    relevance = (query_labels[:, scored].astype(np.int64) @ db_labels[:, scored].T.astype(np.int64)) > 0
    return float(np.mean([tied_ranking_ap(s, r) for s, r in zip(shared, relevance, strict=True)]))
