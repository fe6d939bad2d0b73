"""Search returns exactly the project's ranking (distance, then database index), FAISS ties re-sorted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.index.search import Searcher, exact_top_k, search_codes
from crossforget.index.store import flat_index, ivf_index, open_index
from crossforget.metrics import hamming_ranking
from crossforget.metrics.retrieval import pack_codes, unpack_codes


@pytest.mark.parametrize("k", [1, 10, 100, 3000])
def test_exact_top_k_equals_the_mAP_ranking_with_many_ties(k: int) -> None:
    rng = np.random.default_rng(0)
    db = rng.choice([-1.0, 1.0], size=(3000, 16)).astype(np.float32)  # 16 bits, 3000 items: big tie groups
    q = rng.choice([-1.0, 1.0], size=(40, 16)).astype(np.float32)
    ids = np.arange(3000, dtype=np.int64) * 7 + 3
    # Added in reverse order, so FAISS's own tie order (insertion) is the opposite of the id order.
    dist, got = exact_top_k(flat_index(pack_codes(db)[::-1], ids[::-1], 16), pack_codes(q), k)
    order, expected = hamming_ranking(q, db, k)
    np.testing.assert_array_equal(got, ids[order.numpy()])
    np.testing.assert_array_equal(dist, expected.numpy())


def test_exact_top_k_completes_a_tie_group_faiss_cut() -> None:
    """All items at one distance: FAISS keeps an arbitrary subset, the range search restores the order."""
    db = np.ones((500, 16), dtype=np.float32)
    db[:, 0] = -1.0
    ids = np.arange(500, dtype=np.int64)[::-1].copy()  # added in descending id order
    dist, got = exact_top_k(flat_index(pack_codes(db), ids, 16), pack_codes(np.ones((1, 16))), 5)
    np.testing.assert_array_equal(got[0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(dist[0], [1] * 5)


def test_ivf_results_are_sorted_and_within_the_database() -> None:
    rng = np.random.default_rng(1)
    db = pack_codes(rng.choice([-1.0, 1.0], size=(2000, 32)))
    ids = np.arange(2000, dtype=np.int64)
    dist, got = exact_top_k(ivf_index(db, ids, 32, nlist=16, nprobe=16), db[:20], 10)
    exact_d, exact_i = exact_top_k(flat_index(db, ids, 32), db[:20], 10)
    np.testing.assert_array_equal(got, exact_i)  # nprobe = nlist probes every list: exact
    assert (np.diff(dist, axis=1) >= 0).all()


def test_index_search_matches_the_ranking_of_the_stored_codes(tiny_index: Path) -> None:
    """Both directions on the real index: hits = hamming_ranking of the query code vs the database."""
    version = open_index(tiny_index)
    bits = version.meta["bits"]
    for direction, (q_mod, d_mod) in {"I2T": ("image", "text"), "T2I": ("text", "image")}.items():
        queries = version.codes(q_mod)[:25]
        hits = search_codes(version, queries, direction, k=15, exact=True)
        order, dist = hamming_ranking(
            unpack_codes(queries, bits), unpack_codes(version.codes(d_mod), bits), 15
        )
        for row, row_hits in enumerate(hits):
            assert [h.index for h in row_hits] == version.ids[order[row].numpy()].tolist()
            assert [h.distance for h in row_hits] == dist[row].tolist()


def test_text_and_image_queries(tiny_index: Path, tmp_path: Path) -> None:
    from PIL import Image

    from crossforget.tasks.hashing.training import load_data

    searcher = Searcher(tiny_index)
    result = searcher.search_text("a dog on a beach", k=7)
    assert result.direction == "T2I" and result.version == "v000000" and len(result.hits) == 7
    keys = [(h.distance, h.index) for h in result.hits]
    assert keys == sorted(keys)
    version = searcher.current()
    loaded = load_data(version.model.dataset_spec)
    item = int(version.ids[0])
    path = tmp_path / "query.png"
    Image.fromarray(loaded.data.images.load([item], 32)[0]).save(path)
    by_path = searcher.search_image(path, k=5)
    assert by_path.direction == "I2T" and len(by_path.hits) == 5
    assert searcher.search_image(path.read_bytes(), k=5).hits == by_path.hits
    with pytest.raises(CrossforgetError, match="empty"):
        searcher.search_text("  ")
    with pytest.raises(CrossforgetError, match="-k must be"):
        searcher.search_text("a dog", k=0)
    with pytest.raises(CrossforgetError, match="does not exist"):
        searcher.search_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(CrossforgetError, match="not an image"):
        searcher.search_image(tmp_path / "bad.png")
