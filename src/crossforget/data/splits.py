"""Seeded splits: the DSPH/DCMH retrieval split (query, train, database) and a stratified train/test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossforget.core.errors import CrossforgetError


@dataclass(frozen=True)
class RetrievalSplit:
    """Index arrays into one dataset. The database holds every non-query item (train included)."""

    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    seed: int

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "num_query": int(self.query.size),
            "num_train": int(self.train.size),
            "num_database": int(self.database.size),
        }


def make_split(num_items: int, num_query: int, num_train: int, seed: int) -> RetrievalSplit:
    """Seeded permutation: first ``num_query`` items are queries, the next ``num_train`` train."""
    if num_query <= 0 or num_train <= 0:
        raise CrossforgetError("query and train sizes must be positive")
    if num_query + num_train > num_items:
        raise CrossforgetError(
            f"split needs {num_query} query + {num_train} train items but the dataset has {num_items}; "
            "lower --num-query/--num-train"
        )
    order = np.random.default_rng(seed).permutation(num_items)
    query = np.sort(order[:num_query])
    train = np.sort(order[num_query : num_query + num_train])
    database = np.sort(order[num_query:])
    return RetrievalSplit(query=query, train=train, database=database, seed=seed)


def stratified_split(targets: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split that puts round(test_fraction * n_c) images of every class c in the test set.

    Classes with a single image stay in training (a test image of an unseen class says nothing).
    """
    if not 0.0 < test_fraction < 1.0:
        raise CrossforgetError(f"the test fraction must lie strictly between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == cls))
        k = min(int(round(test_fraction * members.size)), members.size - 1)
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
