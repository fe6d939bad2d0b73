"""Exact Hamming-ranking mAP against an independent per-query NumPy reference and hand-computed cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from crossforget.core.errors import CrossforgetError
from crossforget.metrics import hamming_distance, mean_average_precision, random_ranking_map


def reference_ap(relevant_in_rank_order: np.ndarray) -> tuple[float, int]:
    """Plain loop: precision at each relevant hit, normalised by the hits found."""
    hits = 0
    total = 0.0
    for position, is_relevant in enumerate(relevant_in_rank_order, start=1):
        if is_relevant:
            hits += 1
            total += hits / position
    return (total / hits if hits else 0.0), hits


def reference_map(
    qb: np.ndarray,
    db: np.ndarray,
    ql: np.ndarray,
    dl: np.ndarray,
    topk: int | None = None,
    empty_query: str = "zero",
) -> float:
    bits = qb.shape[1]
    aps = []
    for i in range(qb.shape[0]):
        dist = (bits - db @ qb[i]) // 2
        order = np.argsort(dist, kind="stable")
        if topk is not None:
            order = order[:topk]
        relevant = (dl[order] @ ql[i]) > 0
        ap, hits = reference_ap(relevant)
        if hits or empty_query == "zero":
            aps.append(ap)
    return float(np.mean(aps)) if aps else 0.0


def random_problem(
    seed: int, bits: int, n_query: int = 50, n_db: int = 300, n_labels: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    qb = rng.choice([-1, 1], size=(n_query, bits)).astype(np.int64)
    db = rng.choice([-1, 1], size=(n_db, bits)).astype(np.int64)
    # Sparse labels: some items carry no label at all, so some queries have no relevant item.
    ql = (rng.random((n_query, n_labels)) < 0.07).astype(np.int64)
    dl = (rng.random((n_db, n_labels)) < 0.07).astype(np.int64)
    return qb, db, ql, dl


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("topk", [None, 1, 10, 100])
@pytest.mark.parametrize("empty_query", ["zero", "skip"])
def test_matches_stable_reference_with_many_ties(bits: int, topk: int | None, empty_query: str) -> None:
    qb, db, ql, dl = random_problem(seed=bits * 1000 + (topk or 0), bits=bits, n_labels=5 + bits % 6)
    expected = reference_map(qb, db, ql, dl, topk=topk, empty_query=empty_query)
    got = mean_average_precision(qb, db, ql, dl, topk=topk, empty_query=empty_query)
    assert abs(got - expected) <= 1e-12
    # The problem must exercise both policies: some queries empty, some not.
    has_relevant = (ql @ dl.T > 0).any(axis=1)
    assert has_relevant.any() and not has_relevant.all()


def test_hand_computed_example() -> None:
    # Query code ++++ with label A. Database (index: code, labels -> distance, relevant):
    #   0: --++ A   -> d=2, relevant
    #   1: ++++ B   -> d=0, not relevant
    #   2: +++- A,B -> d=1, relevant
    #   3: ---- B   -> d=4, not relevant
    # Ranking by distance: 1, 2, 0, 3 -> relevance 0, 1, 1, 0.
    # AP@all = (1/2 + 2/3) / 2 = 7/12; AP@2 = (1/2) / 1 = 1/2; AP@1 has no hit -> 0.
    q = np.array([[1, 1, 1, 1]])
    db = np.array([[-1, -1, 1, 1], [1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1]])
    ql = np.array([[1, 0]])
    dl = np.array([[1, 0], [0, 1], [1, 1], [0, 1]])
    assert mean_average_precision(q, db, ql, dl) == pytest.approx(7 / 12, abs=1e-15)
    assert mean_average_precision(q, db, ql, dl, topk=2) == pytest.approx(1 / 2, abs=1e-15)
    assert mean_average_precision(q, db, ql, dl, topk=1) == 0.0
    assert mean_average_precision(q, db, ql, dl, topk=1, empty_query="skip") == 0.0
    # A second query whose only relevant item (label B at index 1, d=0 for code ++++) is ranked first.
    q2 = np.array([[1, 1, 1, 1], [1, 1, 1, 1]])
    ql2 = np.array([[1, 0], [0, 1]])
    # Query 2 relevance in rank order 1, 2, 0, 3: B-items are 1, 2, 3 -> 1, 1, 0, 1 -> AP = (1 + 1 + 3/4)/3.
    ap2 = (1 + 1 + 3 / 4) / 3
    assert mean_average_precision(q2, db, ql2, dl) == pytest.approx((7 / 12 + ap2) / 2, abs=1e-15)
    # topk=1: query 1 has no hit (AP 0), query 2 hits at rank 1 (AP 1).
    assert mean_average_precision(q2, db, ql2, dl, topk=1) == pytest.approx(0.5, abs=1e-15)
    assert mean_average_precision(q2, db, ql2, dl, topk=1, empty_query="skip") == pytest.approx(
        1.0, abs=1e-15
    )


def test_ties_are_broken_by_database_index() -> None:
    # Items 0-2 tie at distance 2; item 3 is closer (d=0) despite its larger index.
    q = np.array([[1, 1, 1, 1]])
    db = np.array([[-1, -1, 1, 1], [1, -1, -1, 1], [1, 1, -1, -1], [1, 1, 1, 1]])
    ql = np.array([[1, 0]])
    # Order A: tied relevance 0, 1, 1 -> ranked 3, 0, 1, 2 -> 0, 0, 1, 1 -> AP = (1/3 + 2/4) / 2 = 5/12.
    labels_a = np.array([[0, 1], [1, 0], [1, 0], [0, 1]])
    # Order B permutes only the tied items: relevance 1, 1, 0 -> 0, 1, 1, 0 -> AP = (1/2 + 2/3) / 2 = 7/12.
    labels_b = labels_a[[1, 2, 0, 3]]
    ap_a = mean_average_precision(q, db, ql, labels_a)
    ap_b = mean_average_precision(q, db, ql, labels_b)
    assert ap_a == pytest.approx(5 / 12, abs=1e-15)
    assert ap_b == pytest.approx(7 / 12, abs=1e-15)
    assert ap_a != ap_b


def test_chunked_equals_unchunked() -> None:
    qb, db, ql, dl = random_problem(seed=7, bits=16)
    for topk in (None, 10):
        whole = mean_average_precision(qb, db, ql, dl, topk=topk, chunk_size=10_000)
        chunked = mean_average_precision(qb, db, ql, dl, topk=topk, chunk_size=7)
        default = mean_average_precision(qb, db, ql, dl, topk=topk)
        assert whole == chunked == default


def test_result_does_not_depend_on_thread_count() -> None:
    qb, db, ql, dl = random_problem(seed=9, bits=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = mean_average_precision(qb, db, ql, dl, chunk_size=3)
        torch.set_num_threads(4)
        several = mean_average_precision(qb, db, ql, dl, chunk_size=3)
    finally:
        torch.set_num_threads(threads)
    assert single == several == mean_average_precision(qb, db, ql, dl)


def test_real_valued_codes_are_signed_with_zero_positive() -> None:
    rng = np.random.default_rng(3)
    real_q = rng.normal(size=(20, 12))
    real_db = rng.normal(size=(60, 12))
    real_q[0, :4] = 0.0
    real_db[:5, 3] = 0.0
    sign_q = np.where(real_q >= 0, 1, -1)
    sign_db = np.where(real_db >= 0, 1, -1)
    ql = (rng.random((20, 4)) < 0.3).astype(np.float32)
    dl = (rng.random((60, 4)) < 0.3).astype(np.float32)
    expected = reference_map(sign_q, sign_db, ql, dl)
    got = mean_average_precision(
        torch.from_numpy(real_q), torch.from_numpy(real_db), ql, torch.from_numpy(dl)
    )
    assert abs(got - expected) <= 1e-12
    assert mean_average_precision(sign_q, sign_db, ql.astype(bool), dl.astype(bool)) == got
    half = torch.from_numpy(real_q).to(torch.bfloat16)
    assert mean_average_precision(half, real_db.astype(np.float32), ql, dl) == got


def test_hamming_distance_counts_differing_bits() -> None:
    rng = np.random.default_rng(5)
    qb = rng.choice([-1, 1], size=(6, 24))
    db = rng.choice([-1, 1], size=(9, 24))
    dist = hamming_distance(qb, db)
    assert dist.dtype == torch.int64 and dist.shape == (6, 9)
    expected = (qb[:, None, :] != db[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(dist.numpy(), expected)
    with pytest.raises(CrossforgetError, match="bits"):
        hamming_distance(qb, db[:, :8])


def _random_ap_samples(relevant_counts: list[int], n_db: int, trials: int, seed: int) -> np.ndarray:
    """mAP of independent uniformly random rankings, one value per trial (vectorised plain formula)."""
    rng = np.random.default_rng(seed)
    positions = np.arange(1, n_db + 1)
    per_query = []
    for r in relevant_counts:
        relevance = np.zeros((trials, n_db), dtype=bool)
        relevance[:, :r] = True
        relevance = rng.permuted(relevance, axis=1)
        cumulative = np.cumsum(relevance, axis=1)
        per_query.append((relevance * cumulative / positions).sum(axis=1) / r if r else np.zeros(trials))
    return np.mean(per_query, axis=0)


def test_random_ranking_map_matches_monte_carlo() -> None:
    n_db = 12
    # Query i is relevant to database items carrying label i; label k sits on the first k+1 items.
    dl = np.zeros((n_db, 4), dtype=np.int64)
    counts = [1, 3, 7, 0]
    for label, count in enumerate(counts):
        dl[:count, label] = 1
    ql = np.eye(4, dtype=np.int64)
    samples = _random_ap_samples(counts, n_db, trials=20_000, seed=11)
    standard_error = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(random_ranking_map(ql, dl) - samples.mean()) < 4 * standard_error
    skip_samples = samples * 4 / 3  # the empty query contributes 0 to every trial
    assert (
        abs(random_ranking_map(ql, dl, empty_query="skip") - skip_samples.mean()) < 4 * standard_error * 4 / 3
    )


def test_random_ranking_map_matches_exhaustive_enumeration() -> None:
    n_db = 5
    for relevant in range(n_db + 1):
        dl = np.zeros((n_db, 1), dtype=np.int64)
        dl[:relevant] = 1
        ap_values = [reference_ap(dl[list(perm), 0] > 0)[0] for perm in itertools.permutations(range(n_db))]
        assert abs(random_ranking_map(np.ones((1, 1)), dl) - np.mean(ap_values)) <= 1e-12
    single = np.ones((1, 1))
    assert random_ranking_map(single, single) == 1.0
    assert random_ranking_map(single, np.zeros((1, 1)), empty_query="skip") == 0.0


def test_random_ranking_map_at_k_matches_exhaustive_enumeration() -> None:
    for n_db in range(1, 7):
        perms = list(itertools.permutations(range(n_db)))
        for relevant in range(n_db + 1):
            dl = np.zeros((n_db, 1), dtype=np.int64)
            dl[:relevant] = 1
            for topk in range(1, n_db + 2):  # n_db + 1: deeper than the database means all of it
                ap_values = [reference_ap(dl[list(p[:topk]), 0] > 0)[0] for p in perms]
                expected = random_ranking_map(np.ones((1, 1)), dl, topk=topk)
                assert abs(expected - np.mean(ap_values)) <= 1e-12, (n_db, relevant, topk)


def test_random_ranking_map_at_k_matches_monte_carlo_on_a_large_database() -> None:
    # N = 1000, R = 50, k = 10: the setting where the mAP@all chance level (0.056) was reported for mAP@10.
    n_db, relevant, topk, trials = 1000, 50, 10, 40_000
    rng = np.random.default_rng(3)
    top = np.argsort(rng.random((trials, n_db)), axis=1)[:, :topk] < relevant  # random rankings, top k
    cumulative = np.cumsum(top, axis=1)
    hits = top.sum(axis=1)
    sums = (top * cumulative / np.arange(1, topk + 1)).sum(axis=1)
    samples = np.divide(sums, hits, out=np.zeros(trials), where=hits > 0)
    dl = np.zeros((n_db, 1), dtype=np.int64)
    dl[:relevant] = 1
    chance = random_ranking_map(np.ones((1, 1)), dl, topk=topk)
    assert abs(chance - samples.mean()) < 4 * samples.std(ddof=1) / np.sqrt(trials)
    assert chance == pytest.approx(0.12559, abs=1e-5)
    assert random_ranking_map(np.ones((1, 1)), dl) == pytest.approx(0.0562, abs=1e-4)
    with pytest.raises(CrossforgetError, match="no closed form"):
        random_ranking_map(np.ones((1, 1)), dl, topk=topk, empty_query="skip")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topk": 0}, "topk"),
        ({"topk": True}, "topk"),
        ({"topk": 2.5}, "topk"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"empty_query": "drop"}, "empty_query"),
        ({"db_codes": np.ones((5, 3))}, "bits"),
        ({"query_codes": np.ones(4)}, "2-D"),
        ({"query_codes": np.ones((0, 4))}, "non-empty"),
        ({"query_codes": np.array([[0, 1, 1, 0], [1, 1, 1, 1]])}, r"\+-1"),
        ({"query_codes": np.array([[np.nan, 1, 1, 1], [1, 1, 1, 1]])}, "NaN"),
        ({"query_codes": [[1, 1, 1, 1], [1, 1, 1, 1]]}, "torch.Tensor or numpy.ndarray"),
        ({"query_labels": np.ones((3, 2))}, "rows"),
        ({"db_labels": np.ones((5, 3))}, "classes"),
        ({"db_labels": np.full((5, 2), 0.5)}, "multi-hot"),
    ],
)
def test_invalid_input_raises(kwargs: dict, message: str) -> None:
    args = {
        "query_codes": np.ones((2, 4)),
        "db_codes": np.ones((5, 4)),
        "query_labels": np.ones((2, 2)),
        "db_labels": np.ones((5, 2)),
    }
    args.update(kwargs)
    with pytest.raises(CrossforgetError, match=message):
        mean_average_precision(**args)


def test_random_ranking_map_validates() -> None:
    with pytest.raises(CrossforgetError, match="classes"):
        random_ranking_map(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(CrossforgetError, match="empty_query"):
        random_ranking_map(np.ones((2, 2)), np.ones((4, 2)), empty_query="none")


def test_pack_codes_round_trips_and_matches_the_sign_rule() -> None:
    from crossforget.metrics.retrieval import pack_codes, unpack_codes

    rng = np.random.default_rng(3)
    codes = rng.standard_normal((50, 24)).astype(np.float32)
    codes[0, :4] = 0.0  # sign(0) -> +1, as the mAP counts it
    packed = pack_codes(codes)
    assert packed.shape == (50, 3) and packed.dtype == np.uint8
    np.testing.assert_array_equal(unpack_codes(packed, 24), np.where(codes >= 0, 1.0, -1.0))


@pytest.mark.parametrize("topk", [None, 1, 7, 500])
def test_hamming_ranking_is_the_stable_ranking_map_scores(topk: int | None) -> None:
    from crossforget.metrics import hamming_ranking

    rng = np.random.default_rng(4)
    q = rng.choice([-1.0, 1.0], size=(30, 8))  # 8 bits over 400 items: ties everywhere
    d = rng.choice([-1.0, 1.0], size=(400, 8))
    order, dist = hamming_ranking(q, d, topk)
    depth = 400 if topk is None else min(topk, 400)
    assert order.shape == dist.shape == (30, depth)
    for row in range(30):
        reference = ((8 - d @ q[row]) / 2).astype(np.int64)
        expected = np.lexsort((np.arange(400), reference))[:depth]  # distance, then database index
        np.testing.assert_array_equal(order[row].numpy(), expected)
        np.testing.assert_array_equal(dist[row].numpy(), reference[expected])
