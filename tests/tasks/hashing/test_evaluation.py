"""D_f / D_r query selection and relevance rules of the retrieval evaluation, on a hand-built split.

Every database code is the same, so each query ranks the database in index order (ties go to the
lower index) and every AP below is a few fractions: the three metrics and their chance levels differ,
so swapping any selection or relevance rule changes a number.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crossforget.data.container import MultiModalData
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.splits import RetrievalSplit
from crossforget.tasks.hashing.evaluation import evaluate_model

CLASSES = ["dog", "person", "cat"]
# items 0-2 are the queries, 3-6 the database (= training set)
LABELS = np.array(
    [
        [0, 1, 0],  # q0 person: retained query
        [1, 0, 1],  # q1 dog + cat: forget query
        [0, 0, 1],  # q2 cat: retained query
        [0, 1, 0],  # d0 person
        [1, 1, 0],  # d1 dog + person
        [0, 0, 1],  # d2 cat
        [1, 0, 0],  # d3 dog
    ],
    dtype=np.uint8,
)


class _Store:
    """Batches that only carry the item index; the fake model looks codes up by it."""

    def __init__(self) -> None:
        self.labels = torch.from_numpy(LABELS)
        self.num_captions = torch.ones(len(LABELS), dtype=torch.long)
        self.device = None
        self.preprocessor = None

    def __len__(self) -> int:
        return len(LABELS)

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> dict:
        return {"index": indices, "labels": self.labels[indices]}


class _TableModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.image = nn.Parameter(torch.randn(len(LABELS), 4, generator=gen))
        self.text = nn.Parameter(torch.randn(len(LABELS), 4, generator=gen))
        with torch.no_grad():
            self.image[3:] = 1.0  # one code for the whole database: rank = database index
            self.text[3:] = 1.0

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image[batch["index"]], self.text[batch["index"]]


def _evaluate(topk: int | None = None) -> list[dict]:
    data = MultiModalData("hand", CLASSES, LABELS, [["x"]] * len(LABELS), None)
    split = RetrievalSplit(query=np.arange(3), train=np.arange(3, 7), database=np.arange(3, 7), seed=0)
    part = partition(data, split, ForgetRequest(["dog"]))
    assert list(part.query_forget) == [1] and list(part.query_retain) == [0, 2]
    return evaluate_model(_TableModel(), _Store(), split, part, topk=topk)


def test_forget_and_retain_queries_and_their_relevance_by_hand():
    for record in _evaluate():
        # D_r: q0 ranks [d0+, d1+, d2, d3] -> AP 1; q2 ranks [d0, d1, d2+, d3] -> AP 1/3. The forget
        # query q1 must stay out (with it the mean would be 71/108).
        assert record["retain"] == pytest.approx(2 / 3, abs=1e-12)
        # D_f, forget label: q1 against the dog items d1, d3 -> (1/2 + 2/4) / 2. Any shared label
        # instead (the cat item d2 too) would give 23/36.
        assert record["forget_label"] == pytest.approx(1 / 2, abs=1e-12)
        # D_f, any label: d1, d2, d3 relevant -> (1/2 + 2/3 + 3/4) / 3 = 23/36 (forget label only: 1/2).
        assert record["forget_any"] == pytest.approx(23 / 36, abs=1e-12)
        # Chance, N = 4: E[AP] = H_4/4 + (R - 1)(4 - H_4)/12 with H_4 = 25/12:
        # R = 1: 25/48, R = 2: 49/72, R = 3: 121/144.
        chance = record["chance"]
        assert chance["retain"] == pytest.approx((49 / 72 + 25 / 48) / 2, abs=1e-12)
        assert chance["forget_label"] == pytest.approx(49 / 72, abs=1e-12)
        assert chance["forget_any"] == pytest.approx(121 / 144, abs=1e-12)


def test_top_k_scores_and_chance_levels_by_hand():
    for record in _evaluate(topk=2):
        assert record["retain"] == pytest.approx(1 / 2, abs=1e-12)  # q0: 1, q2: no hit in the top 2
        assert record["forget_label"] == pytest.approx(1 / 2, abs=1e-12)
        assert record["forget_any"] == pytest.approx(1 / 2, abs=1e-12)
        # mAP@2 of a random ranking with R = 2 of 4: no hit 1/6 (AP 0), two hits 1/6 (AP 1), one hit 4/6
        # (AP 1 or 1/2 equally often) -> 2/3; R = 1: 1/4 * 1 + 1/4 * 1/2 = 3/8;
        # R = 3: two hits 1/2 (AP 1), one hit 1/2 (AP 3/4 on average) -> 7/8.
        chance = record["chance"]
        assert chance["forget_label"] == pytest.approx(2 / 3, abs=1e-12)
        assert chance["retain"] == pytest.approx((2 / 3 + 3 / 8) / 2, abs=1e-12)
        assert chance["forget_any"] == pytest.approx(7 / 8, abs=1e-12)
