"""Live-index speed, as ratios measured in one run.

1. Exact top-k search on random codes: FAISS ``IndexBinaryFlat`` (with the tie completion of
   ``crossforget.index.search.exact_top_k``) against the project's ranking
   (``metrics.retrieval.hamming_ranking``: packed XOR-popcount and a stable radix sort), a torch
   ranking (``(b - Q D^T) / 2`` as float matmul, then the k smallest (distance, index) keys) and a
   plain numpy popcount reference (one query at a time: XOR, ``np.bitwise_count``, argpartition of
   (distance, index) keys). All four must return the same ids and distances.
2. ``IndexBinaryIVF``: recall@10 (and the tie-aware recall: results within the exact k-th distance)
   and speed-up against exact FAISS, on the random codes and on clustered codes (centres with bits
   flipped at random, closer to what hash codes look like).
3. With ``--checkpoint``: one forget request end to end (unlearn + re-encode + verify + swap) on an
   index of that model, against Retrain (trained here unless its checkpoint is cached) + re-encode;
   and the re-encoding cost (one forward pass per database item and modality) per 1,000 items.

    python benchmarks/index_speed.py                      # 1,000,000 codes, 1,000 queries
    python benchmarks/index_speed.py --database 100000 --checkpoint runs/original/bits32 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before FAISS and torch load (as the CLI does)

import argparse  # noqa: E402
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from crossforget.core.reproducibility import environment_stamp
from crossforget.index.search import exact_top_k, recall_at_k, tie_aware_recall
from crossforget.index.store import flat_index, ivf_index
from crossforget.metrics.retrieval import hamming_ranking, unpack_codes


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    runs = [timed(fn) for _ in range(repeat)]
    return min(t for t, _ in runs), runs[-1][1]


def torch_ranking(q: np.ndarray, d: np.ndarray, k: int, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(ids, distances) from float +-1 codes: distance (b - q.r)/2, k smallest (distance, index) keys."""
    qt, dt = torch.from_numpy(q), torch.from_numpy(d)
    bits, n = q.shape[1], d.shape[0]
    index = torch.arange(n, dtype=torch.int64)
    ids, dists = [], []
    for start in range(0, q.shape[0], chunk):
        dist = ((bits - qt[start : start + chunk] @ dt.T) / 2).round().to(torch.int64)
        keys = torch.topk(dist * n + index, k, dim=1, largest=False, sorted=True).values
        ids.append((keys % n).numpy())
        dists.append((keys // n).numpy())
    return np.concatenate(ids), np.concatenate(dists)


def numpy_reference(qp: np.ndarray, dp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query at a time over uint64 words: XOR, popcount, argpartition of (distance, index) keys."""
    q64 = np.ascontiguousarray(qp).view(np.uint64)
    d64 = np.ascontiguousarray(dp).view(np.uint64)
    n = d64.shape[0]
    index = np.arange(n, dtype=np.int64)
    ids = np.empty((q64.shape[0], k), dtype=np.int64)
    dists = np.empty((q64.shape[0], k), dtype=np.int64)
    for row in range(q64.shape[0]):
        dist = np.bitwise_count(d64 ^ q64[row]).sum(axis=1, dtype=np.int64)
        keys = dist * n + index
        top = np.argpartition(keys, k - 1)[:k]
        top = top[np.argsort(keys[top])]
        ids[row], dists[row] = top, dist[top]
    return ids, dists


def clustered_codes(n: int, bits: int, centres: int, flip: float, rng: np.random.Generator) -> np.ndarray:
    centre_bits = rng.integers(0, 2, size=(centres, bits), dtype=np.uint8)
    chosen = centre_bits[rng.integers(0, centres, size=n)]
    flips = (rng.random((n, bits)) < flip).astype(np.uint8)
    return np.packbits(chosen ^ flips, axis=1)


def search_section(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    n, bits, k = args.database, args.bits, args.k
    dp = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
    qp = rng.integers(0, 256, size=(args.queries, bits // 8), dtype=np.uint8)
    ids = np.arange(n, dtype=np.int64)
    index = flat_index(dp, ids, bits)
    faiss_s, (faiss_d, faiss_i) = best_of(lambda: exact_top_k(index, qp, k), args.repeat)
    dq, dd = unpack_codes(qp, bits), unpack_codes(dp, bits)
    ours_s, (order, ours_d) = timed(lambda: hamming_ranking(dq, dd, k))
    torch_s, (torch_i, torch_d) = timed(lambda: torch_ranking(dq, dd, k))
    numpy_s, (numpy_i, numpy_d) = timed(lambda: numpy_reference(qp, dp, k))
    same = (
        np.array_equal(faiss_i, order.numpy())
        and np.array_equal(faiss_i, torch_i)
        and np.array_equal(faiss_i, numpy_i)
        and np.array_equal(faiss_d, ours_d.numpy())
        and np.array_equal(faiss_d, torch_d)
        and np.array_equal(faiss_d, numpy_d)
    )
    print(f"exact top-{k}: {args.queries} queries x {n} codes, {bits} bits (FAISS best of {args.repeat})")
    rows = {"faiss": faiss_s, "project": ours_s, "torch": torch_s, "numpy": numpy_s}
    names = {
        "faiss": "FAISS IndexBinaryFlat",
        "project": "project hamming_ranking",
        "torch": "torch matmul ranking",
        "numpy": "numpy popcount reference",
    }
    for key, seconds in rows.items():
        ratio = seconds / faiss_s
        print(f"  {names[key]:<26} {seconds:8.3f} s  {ratio:8.1f}x FAISS's time")
    print(f"  identical ids and distances (ties by database index): {same}")
    return {
        "database": n,
        "queries": args.queries,
        "bits": bits,
        "k": k,
        "seconds": rows,
        "speedup_vs": {key: rows[key] / faiss_s for key in rows if key != "faiss"},
        "identical": bool(same),
        "_codes": (dp, qp, index, faiss_s, faiss_i, faiss_d),
    }


def ivf_section(args: argparse.Namespace, exact: tuple) -> dict:
    rng = np.random.default_rng(args.seed + 1)
    n, bits, k = args.database, args.bits, args.k
    dp, qp, index, _, faiss_i, faiss_d = exact
    ids = np.arange(n, dtype=np.int64)
    clustered = clustered_codes(n, bits, args.centres, args.flip, rng)
    cq = clustered[rng.choice(n, size=args.queries, replace=False)].copy()
    cq ^= np.packbits((rng.random((args.queries, bits)) < args.flip).astype(np.uint8), axis=1)
    out: dict = {"nlist": args.nlist, "centres": args.centres, "flip": args.flip}
    for name, data, queries in (("random", dp, qp), ("clustered", clustered, cq)):
        flat = index if name == "random" else flat_index(data, ids, bits)
        exact_s, (ed, ei) = best_of(
            lambda flat=flat, queries=queries: exact_top_k(flat, queries, k), args.repeat
        )
        train_s, ivf = timed(lambda data=data: ivf_index(data, ids, bits, args.nlist, 1, args.seed))
        results = {"exact_seconds": exact_s, "train_seconds": train_s, "nprobe": {}}
        print(f"IVF on {name} codes: {args.nlist} lists (trained in {train_s:.1f} s), exact {exact_s:.3f} s")
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            approx_s, (ad, ai) = best_of(
                lambda ivf=ivf, queries=queries: exact_top_k(ivf, queries, k), args.repeat
            )
            entry = {
                "seconds": approx_s,
                "speedup": exact_s / approx_s,
                "recall_at_k": recall_at_k(ai, ei),
                "tie_aware_recall": tie_aware_recall(ad, ed),
            }
            results["nprobe"][str(nprobe)] = entry
            print(
                f"  nprobe {nprobe:>3}: {approx_s:7.3f} s, {entry['speedup']:6.1f}x faster, recall@{k} "
                f"{entry['recall_at_k']:.3f}, within the exact k-th distance {entry['tie_aware_recall']:.3f}"
            )
        out[name] = results
    return out


def forget_section(args: argparse.Namespace) -> dict:
    from crossforget.index.build import build_index
    from crossforget.index.encode import encode_items
    from crossforget.index.forget import IndexForgetRequest, forget
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
    from crossforget.tasks.hashing.columns import ReferenceRecipe
    from crossforget.tasks.hashing.task import store_for
    from crossforget.tasks.hashing.training import load_data

    saved = load_hashing_checkpoint(args.checkpoint)
    loaded = load_data(saved.dataset_spec)
    store = store_for(saved, loaded)
    database = loaded.split.database
    encode_items(saved.model, store, database[:512])  # warm-up
    encode_s, _ = best_of(lambda: encode_items(saved.model, store, database), 2)
    per_1000 = 1000 * encode_s / database.size
    print(
        f"re-encoding {database.size} items (both modalities): {encode_s:.2f} s = {per_1000:.3f} s per 1,000"
    )
    work = Path(tempfile.mkdtemp(prefix="index-speed-"))
    try:
        build_s, _ = timed(lambda: build_index(args.checkpoint, saved, loaded, work / "index"))
        from crossforget.cli.common import parse_options

        request = IndexForgetRequest(classes=args.forget, options=parse_options(args.option))
        forget_s, record = timed(lambda: forget(work / "index", request, log=lambda text: None))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    reference = ReferenceRecipe.of_checkpoint(saved, args.cache)
    retrain_wall, (retrain, cached) = timed(lambda: reference.retrain(loaded, saved, args.forget))
    train_s = float(retrain.config["training"]["seconds"])
    reencode_s, _ = timed(lambda: encode_items(retrain.model, store_for(retrain, loaded), database))
    baseline = train_s + reencode_s
    durations = record["durations"]
    print(
        f"forget {' '.join(args.forget)} end to end: {forget_s:.1f} s (unlearn {durations['unlearn']:.1f}, "
        f"encode {durations['encode']:.1f}, verify {durations['verify']:.1f}, "
        f"write {durations['write']:.1f}); build {build_s:.1f} s"
    )
    how = "recorded in the cached checkpoint" if cached else "trained in this run"
    print(
        f"Retrain + re-encode: {baseline:.1f} s (training {train_s:.1f} s, {how}; "
        f"re-encode {reencode_s:.1f} s): the forget request is {baseline / forget_s:.1f}x faster"
    )
    return {
        "checkpoint": str(args.checkpoint),
        "forget": list(args.forget),
        "database_items": int(database.size),
        "encode_seconds": encode_s,
        "encode_seconds_per_1000_items": per_1000,
        "build_seconds": build_s,
        "forget_seconds": forget_s,
        "forget_durations": durations,
        "retrain_training_seconds": train_s,
        "retrain_cached": bool(cached),
        "retrain_wall_seconds": retrain_wall,
        "retrain_reencode_seconds": reencode_s,
        "speedup": baseline / forget_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=int, default=1_000_000, help="random codes (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--nlist", type=int, default=1024, help="IVF lists (default 1024, about sqrt(N))")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--centres", type=int, default=1000, help="clustered codes: number of centres")
    parser.add_argument("--flip", type=float, default=0.1, help="clustered codes: bit flip probability")
    parser.add_argument("--repeat", type=int, default=3, help="FAISS timings: best of this many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a scenes checkpoint for section 3")
    parser.add_argument("--forget", nargs="+", default=["dog"])
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="PPP option of the request")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"), help="Retrain checkpoints")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)
    if args.bits % 64:
        parser.error("--bits must be a multiple of 64 (the numpy reference works on uint64 words)")
    results: dict = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    search = search_section(args)
    results["ivf"] = ivf_section(args, search.pop("_codes"))
    results["search"] = search
    if args.checkpoint is not None:
        results["forget"] = forget_section(args)
    results["environment"] = environment_stamp()
    if args.json is not None:
        from crossforget.core.io import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
