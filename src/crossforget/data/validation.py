"""The validation split used to tune hyperparameters without touching the query (test) set.

Validation queries are a seeded sample of the database items that are *not* training items (the
database holds every non-query item, the train split included). They are scored against the
database without themselves, so a query never retrieves its own pair, as in the test protocol.
Queries are never used, so a tuned setting is still judged on unseen queries. D_f / D_r of the
validation queries follow the forget request exactly as they do for test queries.
"""

from __future__ import annotations

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.splits import RetrievalSplit

DEFAULT_SIZE = 500


def validation_split(split: RetrievalSplit, size: int = DEFAULT_SIZE, seed: int = 0) -> RetrievalSplit:
    """A split whose queries are ``size`` seeded held-out database items (all of them when fewer exist).

    ``train`` is unchanged; ``database`` loses the validation items; ``query`` of the test split is
    absent from both, as it was before.
    """
    if size < 1:
        raise CrossforgetError(f"the validation split needs at least one item, got --validation-size {size}")
    held_out = np.setdiff1d(split.database, split.train, assume_unique=True)
    if held_out.size == 0:
        raise CrossforgetError(
            "the database holds no item outside the train split, so there is nothing to validate on; "
            "lower --num-train (or raise the dataset size) when training"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(held_out, size=min(size, held_out.size), replace=False))
    database = np.setdiff1d(split.database, chosen, assume_unique=True)
    return RetrievalSplit(query=chosen, train=split.train, database=database, seed=split.seed)
