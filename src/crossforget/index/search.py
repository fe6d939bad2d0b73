"""Search a live index: top-k items by Hamming distance, image-to-text and text-to-image.

Rankings are the project's exact ranking (``metrics.retrieval.hamming_ranking``): ascending distance,
ties broken by database index, which is the dataset index because the database is stored in
ascending order. FAISS returns tied items in its own order and may cut a tied group at the k-th
place, so results are re-sorted by (distance, id), and a query whose k-th distance equals the last
one FAISS returned is completed with a range search over every item within that distance.

``Searcher`` keeps the serving version in memory and moves to a newer one when the audit log's head
changes; one search reads one version object from start to end, so every answer comes wholly from
one version, even while a forget request commits a new one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.index.encode import encode_image, encode_text, read_image
from crossforget.index.store import IndexVersion, open_index, serving
from crossforget.metrics.keys import I2T, T2I

# Direction -> (query modality, database modality).
DIRECTIONS = {I2T: ("image", "text"), T2I: ("text", "image")}
MAX_K = 10_000


def exact_top_k(index: object, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances, ids), each (Q, k'), k' = min(k, items): ascending distance, ties by id."""
    n = int(index.ntotal)
    k = min(k, n)
    if k == 0:
        empty = np.zeros((queries.shape[0], 0), dtype=np.int64)
        return empty, empty.copy()
    queries = np.ascontiguousarray(queries, dtype=np.uint8)
    fetch = min(n, 2 * k + 16)
    dist, ids = index.search(queries, fetch)
    out_d = np.empty((queries.shape[0], k), dtype=np.int64)
    out_i = np.empty((queries.shape[0], k), dtype=np.int64)
    for row in range(queries.shape[0]):
        d, i = dist[row].astype(np.int64), ids[row].astype(np.int64)
        valid = i >= 0  # IVF may return fewer than asked (-1 ids)
        d, i = d[valid], i[valid]
        if fetch < n and d.size >= k and d[k - 1] == d[-1]:
            # The tie group at the k-th distance may continue past what FAISS returned: take all of it.
            lims, rd, ri = index.range_search(queries[row : row + 1], int(d[k - 1]) + 1)
            d, i = rd[lims[0] : lims[1]].astype(np.int64), ri[lims[0] : lims[1]].astype(np.int64)
        order = np.lexsort((i, d))[:k]
        got = order.size
        out_d[row, :got], out_i[row, :got] = d[order], i[order]
        if got < k:  # only IVF: fewer candidates than k in the probed lists
            out_d[row, got:], out_i[row, got:] = -1, -1
    return out_d, out_i


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k ids (rows) that the approximate top-k found."""
    found = [np.intersect1d(a[a >= 0], e).size for a, e in zip(approx, exact, strict=True)]
    return float(np.sum(found) / max(1, exact.size))


def tie_aware_recall(approx_dist: np.ndarray, exact_dist: np.ndarray) -> float:
    """Share of approximate results within the exact k-th distance (a tied swap is no loss)."""
    limit = exact_dist[:, -1:]
    return float(np.mean((approx_dist >= 0) & (approx_dist <= limit)))


@dataclass
class Hit:
    rank: int
    item: str
    index: int
    distance: int
    labels: list[str]
    caption: str

    def to_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class SearchResult:
    """One answer: the version it came from and its hits."""

    version: str
    seq: int
    direction: str
    exact: bool
    hits: list[Hit]

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "seq": self.seq,
            "direction": self.direction,
            "exact": self.exact,
            "hits": [h.to_dict() for h in self.hits],
        }


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise CrossforgetError(f"-k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def search_codes(
    version: IndexVersion, queries: np.ndarray, direction: str, k: int, exact: bool = False
) -> list[list[Hit]]:
    """Hits per packed query code; ``exact=False`` uses the IVF index when the version has one."""
    check_k(k)
    if direction not in DIRECTIONS:
        raise CrossforgetError(f"unknown direction {direction!r}; choose I2T or T2I")
    target = DIRECTIONS[direction][1]
    index = version.flat[target] if exact or target not in version.ivf else version.ivf[target]
    dist, ids = exact_top_k(index, queries, k)
    rows = np.searchsorted(version.ids, ids.clip(min=0))
    names = version.class_names
    out = []
    for q in range(ids.shape[0]):
        hits = []
        for rank, (d, i, r) in enumerate(zip(dist[q], ids[q], rows[q], strict=True)):
            if i < 0:
                break
            labels = [names[c] for c in np.flatnonzero(version.labels[r])]
            hits.append(
                Hit(rank + 1, str(version.item_ids[r]), int(i), int(d), labels, str(version.captions[r]))
            )
        out.append(hits)
    return out


class Searcher:
    """The Python search API over an index folder; safe to share between threads."""

    def __init__(self, index_dir: str | Path, checkpoint: str | Path | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.checkpoint = checkpoint
        self._version = open_index(self.index_dir, checkpoint)
        self._loading = threading.Lock()

    def current(self) -> IndexVersion:
        """The serving version; a newer committed one is loaded first (by one thread, others keep
        answering from the version they have meanwhile)."""
        version = self._version
        seq, _, _ = serving(self.index_dir)
        if seq != version.seq and self._loading.acquire(blocking=False):
            try:
                if serving(self.index_dir)[0] != self._version.seq:
                    self._version = open_index(self.index_dir, self.checkpoint)
            finally:
                self._loading.release()
            version = self._version
        return version

    def search_text(self, text: str, k: int = 10, exact: bool = False) -> SearchResult:
        """Text-to-image: the images nearest a sentence."""
        if not isinstance(text, str) or not text.strip():
            raise CrossforgetError("the text query is empty; give a sentence such as 'a dog on a beach'")
        version = self.current()
        code = encode_text(version.model.model, version.model.preprocessor, [text])
        return self._result(version, code, T2I, k, exact)

    def search_image(
        self, image: str | Path | bytes | np.ndarray, k: int = 10, exact: bool = False
    ) -> SearchResult:
        """Image-to-text: the captions nearest an image (a path, file bytes or an (H, W, 3) array)."""
        version = self.current()
        preprocessor = version.model.preprocessor
        if not callable(getattr(preprocessor, "images", None)):
            encode_image(version.model.model, preprocessor, np.zeros((1, 1, 3), np.uint8))  # its error
        size = int(getattr(preprocessor, "image_size", 0) or 0)
        if not isinstance(image, np.ndarray):
            image = read_image(image, size)
        elif image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise CrossforgetError(
                f"an image array must be ({size}, {size}, 3) uint8, got {image.shape} {image.dtype}"
            )
        code = encode_image(version.model.model, preprocessor, image)
        return self._result(version, code, I2T, k, exact)

    def _result(
        self, version: IndexVersion, code: np.ndarray, direction: str, k: int, exact: bool
    ) -> SearchResult:
        hits = search_codes(version, code, direction, k, exact)[0]
        used_exact = exact or DIRECTIONS[direction][1] not in version.ivf
        return SearchResult(version.name, version.seq, direction, used_exact, hits)
