"""The forgetting guard's held-out probe for hashing models: a small retrieval test on held-out items.

Queries come from the held-out pool of ``tune`` (database items outside the train split) minus
``tune``'s own validation queries, never from the test queries: up to ``forget_queries`` items
carrying a forget label and ``retain_queries`` items carrying none. They are scored against a seeded
sample of the database without them, both directions. Retained score: D_r mAP; forget score: D_f mAP
with forget-label relevance; floor: what a model that never learnt the classes scores, either the
retained-label oracle's mAP (``floor="cooccurrence"``: ranking by shared retained labels, so a class
that co-occurs with retained ones keeps a high floor, as Retrain does) or chance (``floor="chance"``).
The sample is fixed by the split seed, so every method and seed of a request is checked on the
same items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.data.forget import ForgetPartition
from crossforget.data.splits import RetrievalSplit
from crossforget.data.validation import validation_split
from crossforget.metrics.keys import PRIMARY_FORGET, RETAIN
from crossforget.metrics.oracle_floor import label_oracle_map
from crossforget.metrics.retrieval import mean_average_precision, random_ranking_map
from crossforget.models.inputs import BatchSource
from crossforget.tasks.hashing.evaluation import Codes, encode, retrieval_scores
from crossforget.unlearning.guard import ProbeScores, RetentionProbe


@dataclass(frozen=True)
class ProbeSizes:
    """How many held-out items the probe scores (cost: one forward pass per item and candidate)."""

    forget_queries: int = 100
    retain_queries: int = 200
    database: int = 1500


def hashing_probe(
    store: BatchSource,
    split: RetrievalSplit,
    part: ForgetPartition,
    sizes: ProbeSizes | None = None,
    floor: Literal["cooccurrence", "chance"] = "cooccurrence",
) -> RetentionProbe | None:
    """The probe for one request, or None when the split keeps no validation item with a forget label."""
    sizes = sizes or ProbeSizes()
    labels = store.labels.numpy().astype(np.uint8)
    forget_classes = list(part.forget_classes)
    # Held out from training and, where the data allows, disjoint from tune's
    # validation queries, so that numbers scored on the validation split do not also steer the guard
    # (on data too small for both, the probe shares the held-out pool with them).
    held_out = np.setdiff1d(split.database, split.train, assume_unique=True)
    pool = np.setdiff1d(held_out, validation_split(split).query, assume_unique=True)
    carries = labels[pool][:, forget_classes].any(axis=1)
    if not carries.any() or carries.all():
        pool = held_out
        carries = labels[pool][:, forget_classes].any(axis=1)
    if not carries.any() or carries.all():
        return None
    rng = np.random.default_rng(split.seed)
    forget_q = _sample(rng, pool[carries], sizes.forget_queries)
    retain_q = _sample(rng, pool[~carries], sizes.retain_queries)
    queries = np.concatenate([forget_q, retain_q])
    database = _sample(rng, np.setdiff1d(split.database, queries), sizes.database)
    forget_mask = np.isin(queries, forget_q)
    q_labels, d_labels = labels[queries], labels[database]
    if not d_labels[:, forget_classes].any():
        raise CrossforgetError("the probe database holds no item of the forget classes; raise its size")

    # Each forget class scored alone (its forget queries, its own label's relevance), for the guard's
    # per-class refinement: two or more classes, each with probe queries and database items.
    f_labels = q_labels[forget_mask]
    per_class = [c for c in forget_classes if f_labels[:, c].any() and d_labels[:, c].any()]
    if len(forget_classes) < 2 or len(per_class) != len(forget_classes):
        per_class = []

    def score(model: nn.Module) -> ProbeScores:
        query_codes, db_codes = encode(model, store, queries), encode(model, store, database)
        records = retrieval_scores(query_codes, db_codes, q_labels, d_labels, forget_mask, forget_classes)
        return ProbeScores(
            retain=float(np.mean([r[RETAIN] for r in records])),
            forget=float(np.mean([r[PRIMARY_FORGET] for r in records])),
            per_class=tuple(
                _class_score(query_codes, db_codes, forget_mask & (q_labels[:, c] > 0), q_labels, d_labels, c)
                for c in per_class
            ),
        )

    if floor not in ("cooccurrence", "chance"):
        raise CrossforgetError(f"the probe's floor must be 'cooccurrence' or 'chance', got {floor!r}")
    level = _floor(floor, f_labels, d_labels, forget_classes, forget_classes)
    class_floors = tuple(
        _floor(floor, f_labels[f_labels[:, c] > 0], d_labels, forget_classes, [c]) for c in per_class
    )
    description = (
        f"{forget_q.size} forget and {retain_q.size} retained validation queries (database \\ train) "
        f"against {database.size} database items, I2T and T2I; {floor} floor"
    )
    return RetentionProbe(score, level, description, class_floors)


def _floor(
    floor: str, q_labels: np.ndarray, d_labels: np.ndarray, forget_classes: list[int], relevant: list[int]
) -> float:
    """The forget-label mAP of a forget-blind ranking, with relevance on the ``relevant`` classes."""
    if floor == "cooccurrence":
        return label_oracle_map(q_labels, d_labels, forget_classes, relevant)
    return float(random_ranking_map(q_labels[:, relevant], d_labels[:, relevant]))


def _class_score(
    query: Codes, database: Codes, rows: np.ndarray, q_labels: np.ndarray, d_labels: np.ndarray, c: int
) -> float:
    """Forget-label mAP of one forget class: its forget queries, relevance on its label, both directions."""
    picked = torch.from_numpy(rows)
    return float(
        np.mean(
            [
                mean_average_precision(q[picked], d, q_labels[rows][:, [c]], d_labels[:, [c]])
                for q, d in ((query.image, database.text), (query.text, database.image))
            ]
        )
    )


def _sample(rng: np.random.Generator, items: np.ndarray, size: int) -> np.ndarray:
    if items.size <= size:
        return np.sort(items)
    return np.sort(rng.choice(items, size=size, replace=False))
