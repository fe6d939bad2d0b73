"""Exact Hamming-ranking mean average precision for cross-modal hashing retrieval.

Ranking convention: database items are ordered by ascending Hamming distance and ties are broken by
database index (a stable sort). Reference implementations sort with an unstable argsort, so their
numbers drift with the sort algorithm; pinning the tie rule makes every mAP here reproducible.

Speed comes from the structure of the problem rather than from approximation:
- codes and multi-hot labels are packed into 64-bit words, so a Hamming distance is an XOR and a
  popcount and "shares a label" is an AND, instead of float matrix products;
- Hamming distances are small integers ``0..b`` (one byte up to 255 bits), and NumPy's stable argsort
  of such keys is a radix (counting) sort: linear in ``N``, vectorised over a chunk of queries, and
  ordering tied items by database index, so no per-query comparison sort is ever run.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch
from scipy.special import gammaln

from crossforget.core.errors import CrossforgetError

ArrayLike = torch.Tensor | np.ndarray
EmptyQuery = Literal["zero", "skip"]

# Peak bytes of work arrays per (query, database item) pair in one chunk: the label AND and its
# temporary (8 + 8), the code XOR (8) or the sort order (8), plus distances, relevance and ranked
# relevance (1 each, 2 for distances beyond 255 bits). Rounded up so the budgets below are upper bounds.
_BYTES_PER_PAIR = 24
# Default chunk: small enough to stay in cache; measured ~1.5x faster than 256 MB chunks.
_CHUNK_BYTES = 8 * 2**20
# Cap on the work arrays of all chunks in flight together.
_MEMORY_CAP_BYTES = 256 * 2**20


def _as_2d(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # NumPy has no bfloat16; float32 keeps every sign and 0/1 value.
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    elif not isinstance(x, np.ndarray):
        raise CrossforgetError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise CrossforgetError(
            f"{name} must be a non-empty 2-D array (rows x columns), got shape {tuple(x.shape)}"
        )
    return x


def _pack(bits: np.ndarray) -> np.ndarray:
    """Rows of booleans as (rows, words) uint64, zero-padded so padding never differs or matches."""
    packed = np.packbits(bits, axis=1)
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _sign_bits(a: np.ndarray, name: str) -> np.ndarray:
    """Booleans ``code >= 0``; float codes are signed with sign(0) -> +1, integer ones must be +-1.

    Integer codes are checked rather than signed because {0, 1} bits would silently all become +1.
    """
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise CrossforgetError(f"{name} contains NaN or inf; pass finite real-valued or +-1 codes")
    elif not ((a == 1) | (a == -1)).all():
        raise CrossforgetError(f"integer {name} must be +-1; convert {{0,1}} bits with 2 * bits - 1")
    return a >= 0


def _packed_codes(a: np.ndarray, name: str) -> np.ndarray:
    """Sign bits of the codes, packed into 64-bit words."""
    return _pack(_sign_bits(a, name))


def pack_codes(codes: ArrayLike, name: str = "codes") -> np.ndarray:
    """Sign codes as (N, ceil(b/8)) uint8 bytes, bit ``code >= 0``, most significant bit first.

    The same bits every Hamming distance here counts (``_packed_codes`` pads these bytes to 64-bit
    words), in the layout FAISS binary indexes take, so an index and the mAP code rank alike.
    """
    return np.packbits(_sign_bits(_as_2d(codes, name), name), axis=1)


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of ``pack_codes``: (N, bits) float32 codes in {-1, +1}."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=bits).astype(np.float32) * 2 - 1


def _packed_labels(a: np.ndarray, name: str) -> np.ndarray:
    if not ((a == 0) | (a == 1)).all():
        raise CrossforgetError(f"{name} must be multi-hot (only 0/1 entries); threshold or one-hot encode it")
    return _pack(a != 0)


def _check_widths(q: np.ndarray, d: np.ndarray, q_name: str, d_name: str, what: str) -> None:
    if q.shape[1] != d.shape[1]:
        raise CrossforgetError(
            f"{q_name} has {q.shape[1]} {what} but {d_name} has {d.shape[1]}; use one {what[:-1]} count"
        )


def _prepare_codes(query_codes: ArrayLike, db_codes: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated packed query and database codes and their bit count."""
    q = _as_2d(query_codes, "query_codes")
    d = _as_2d(db_codes, "db_codes")
    _check_widths(q, d, "query_codes", "db_codes", "bits")
    return _packed_codes(q, "query_codes"), _packed_codes(d, "db_codes"), q.shape[1]


def _prepare_labels(query_labels: ArrayLike, db_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated packed query and database multi-hot labels."""
    q = _as_2d(query_labels, "query_labels")
    d = _as_2d(db_labels, "db_labels")
    _check_widths(q, d, "query_labels", "db_labels", "classes")
    return _packed_labels(q, "query_labels"), _packed_labels(d, "db_labels")


def _check_rows(codes: np.ndarray, labels: np.ndarray, side: str) -> None:
    if codes.shape[0] != labels.shape[0]:
        raise CrossforgetError(
            f"{side}_codes has {codes.shape[0]} rows but {side}_labels has {labels.shape[0]}; "
            "pass one label row per code row"
        )


def _check_empty_query(empty_query: str) -> None:
    if empty_query not in ("zero", "skip"):
        raise CrossforgetError(f"empty_query must be 'zero' or 'skip', got {empty_query!r}")


def _check_positive_int(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CrossforgetError(f"{name} must be None or an integer >= 1, got {value!r}")


def _hamming(q: np.ndarray, d: np.ndarray, n_bits: int) -> np.ndarray:
    """(Q, N) popcounts of XORed packed codes, in the smallest unsigned type that holds ``n_bits``."""
    dist = np.bitwise_count(q[:, 0, None] ^ d[:, 0]).astype(np.min_scalar_type(n_bits), copy=False)
    for w in range(1, q.shape[1]):
        dist += np.bitwise_count(q[:, w, None] ^ d[:, w])
    return dist


def _relevance(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(Q, N) booleans: query and item share at least one label (packed AND, any word non-zero)."""
    shared = q[:, 0, None] & d[:, 0]
    for w in range(1, q.shape[1]):
        shared |= q[:, w, None] & d[:, w]
    return shared != 0


def _chunk_rows(n_db: int, chunk_size: int | None) -> int:
    return chunk_size or max(1, _CHUNK_BYTES // (_BYTES_PER_PAIR * n_db))


def _chunks(n_query: int, step: int) -> Iterator[slice]:
    for start in range(0, n_query, step):
        yield slice(start, min(start + step, n_query))


def hamming_distance(query_codes: ArrayLike, db_codes: ArrayLike) -> torch.Tensor:
    """Integer Hamming distances (Q, N) between sign codes (real codes are signed, sign(0) -> +1)."""
    q, d, n_bits = _prepare_codes(query_codes, db_codes)
    return torch.from_numpy(_hamming(q, d, n_bits).astype(np.int64))


def _stable_order(dist: np.ndarray, depth: int) -> np.ndarray:
    """(Q, depth) database positions by ascending distance, ties by position: the one ranking rule."""
    return np.argsort(dist, axis=1, kind="stable")[:, :depth]


def hamming_ranking(
    query_codes: ArrayLike, db_codes: ArrayLike, topk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact ranking mAP scores: (positions, distances), each (Q, k), k = min(topk, N) (all if None).

    Ascending Hamming distance, ties broken by database position (what ``mean_average_precision``
    ranks by); a retrieval index must return exactly these lists.
    """
    _check_positive_int(topk, "topk")
    q, d, n_bits = _prepare_codes(query_codes, db_codes)
    depth = d.shape[0] if topk is None else min(topk, d.shape[0])
    orders, dists = [], []
    for rows in _chunks(q.shape[0], _chunk_rows(d.shape[0], None)):
        dist = _hamming(q[rows], d, n_bits)
        order = _stable_order(dist, depth)
        orders.append(order)
        dists.append(np.take_along_axis(dist, order, axis=1).astype(np.int64))
    return torch.from_numpy(np.concatenate(orders)), torch.from_numpy(np.concatenate(dists))


def _chunk_ap(dist: np.ndarray, rel: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of precision at each relevant hit within ``depth`` and the hit count, per query row.

    Summation runs hit by hit in rank order, exactly like a plain per-query loop.
    """
    rows, n_db = dist.shape
    order = _stable_order(dist, depth)
    order += np.arange(rows)[:, None] * n_db  # flat indices into rel
    hit_rows, hit_cols = np.divmod(np.flatnonzero(rel.ravel().take(order)), depth)
    hits = np.bincount(hit_rows, minlength=rows)
    # Running hit count at each relevant position: 1, 2, ... restarting on every query row.
    running = np.arange(1, hit_rows.size + 1, dtype=np.float64) - (np.cumsum(hits) - hits)[hit_rows]
    precision = running / (hit_cols + 1).astype(np.float64)
    # NumPy returns integer zeros for an empty weighted bincount (a chunk without hits); keep float64.
    return np.bincount(hit_rows, weights=precision, minlength=rows).astype(np.float64, copy=False), hits


def _mean(ap: np.ndarray, nonempty: np.ndarray, empty_query: str) -> float:
    if empty_query == "skip":
        ap = ap[nonempty]
        if ap.size == 0:
            return 0.0
    return float(ap.mean())


def mean_average_precision(
    query_codes: ArrayLike,
    db_codes: ArrayLike,
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    topk: int | None = None,
    empty_query: EmptyQuery = "zero",
    chunk_size: int | None = None,
) -> float:
    """mAP@all (``topk=None``) or mAP@k of Hamming ranking, ties broken by database index.

    Codes are (Q, b) and (N, b) sign codes; real-valued codes are signed with sign(0) -> +1. Labels are
    multi-hot (Q, C) and (N, C); an item is relevant when it shares at least one label with the query.
    AP@k averages precision at each relevant position among the first k and divides by the number of
    relevant items found there (DeepHash/DJSRH convention); ``topk`` larger than N means all of N.
    A query without a relevant item in those positions scores 0 and stays in the mean
    (``empty_query="zero"``, the reference convention) or is left out (``"skip"``; 0.0 if all are).
    Queries are processed ``chunk_size`` at a time (default: about 8 MB of work arrays per chunk) on
    up to ``torch.get_num_threads()`` threads, with at most about 256 MB of work arrays in flight.
    """
    _check_positive_int(topk, "topk")
    _check_positive_int(chunk_size, "chunk_size")
    _check_empty_query(empty_query)
    q, d, n_bits = _prepare_codes(query_codes, db_codes)
    ql, dl = _prepare_labels(query_labels, db_labels)
    _check_rows(q, ql, "query")
    _check_rows(d, dl, "db")

    depth = d.shape[0] if topk is None else min(topk, d.shape[0])
    ap = np.zeros(q.shape[0], dtype=np.float64)
    hits = np.empty(q.shape[0], dtype=np.int64)

    def score(rows: slice) -> None:
        precision_sum, hits[rows] = _chunk_ap(_hamming(q[rows], d, n_bits), _relevance(ql[rows], dl), depth)
        np.divide(precision_sum, hits[rows], out=ap[rows], where=hits[rows] > 0)

    # Chunks are independent and write disjoint slices; NumPy's heavy loops release the GIL, so
    # threads (as many as torch is allowed) overlap them. Results do not depend on the thread count.
    step = _chunk_rows(d.shape[0], chunk_size)
    in_flight = _MEMORY_CAP_BYTES // (step * d.shape[0] * _BYTES_PER_PAIR)
    with ThreadPoolExecutor(max_workers=max(1, min(torch.get_num_threads(), in_flight))) as pool:
        list(pool.map(score, _chunks(q.shape[0], step)))
    return _mean(ap, hits > 0, empty_query)


def random_ranking_map(
    query_labels: ArrayLike,
    db_labels: ArrayLike,
    empty_query: EmptyQuery = "zero",
    topk: int | None = None,
) -> float:
    """Exact expected mAP@all (``topk=None``) or mAP@k of a uniformly random ranking: the chance level.

    Same AP@k convention as ``mean_average_precision``. With R relevant among N and depth
    k = min(topk, N), the number of hits H in the top k is hypergeometric; given H = h >= 1 the hits
    sit on a uniformly random h-subset of the k positions, so (the mAP@all argument on k items)
    E[AP | h] = H_k/k + (h - 1) c with c = (k - H_k) / (k (k - 1)) (c = 0 for k = 1), H_k the k-th
    harmonic number; h = 0 scores 0. Linear in h, hence E[AP] = (1 - P(H=0)) (H_k/k - c) + c E[H]
    with E[H] = k R / N and P(H=0) = C(N-R, k) / C(N, k). For k = N this is
    H_N/N + (R - 1)(N - H_N)/(N (N - 1)). ``empty_query="skip"`` leaves out queries with R = 0; with
    ``topk`` it is refused, because which queries have no hit is then random and the expected mean
    over the others has no closed form.
    """
    _check_empty_query(empty_query)
    _check_positive_int(topk, "topk")
    if topk is not None and empty_query == "skip":
        raise CrossforgetError(
            "the chance level of mAP@k with empty_query='skip' has no closed form; use empty_query='zero'"
        )
    ql, dl = _prepare_labels(query_labels, db_labels)
    n = dl.shape[0]
    relevant = np.concatenate(
        [_relevance(ql[rows], dl).sum(axis=1) for rows in _chunks(ql.shape[0], _chunk_rows(n, None))]
    )
    expected = _expected_random_ap(relevant.astype(np.float64), n, n if topk is None else min(topk, n))
    return _mean(expected, relevant > 0, empty_query)


def _expected_random_ap(relevant: np.ndarray, n: int, depth: int) -> np.ndarray:
    """E[AP@depth] of a random ranking of ``n`` items for each query's relevant count (see above)."""
    harmonic = float(np.sum(1.0 / np.arange(1, depth + 1, dtype=np.float64)))
    pair = (depth - harmonic) / (depth * (depth - 1)) if depth > 1 else 0.0
    misses = n - relevant
    # log C(N-R, k) - log C(N, k); no hit is impossible when fewer than k items are irrelevant.
    fits = misses >= depth
    safe = np.where(fits, misses, depth)
    log_none = gammaln(safe + 1) - gammaln(safe - depth + 1) - gammaln(n + 1) + gammaln(n - depth + 1)
    p_none = np.where(fits, np.exp(log_none), 0.0)
    expected = (1.0 - p_none) * (harmonic / depth - pair) + pair * depth * relevant / n
    return np.where(relevant > 0, expected, 0.0)
