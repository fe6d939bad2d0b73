"""Build a live index from a hashing checkpoint: encode the database, write version 0, log the build."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.validation import validation_split
from crossforget.index.audit import AuditLog
from crossforget.index.encode import ItemTable, check_bits, encode_items, item_table
from crossforget.index.search import exact_top_k, recall_at_k, tie_aware_recall
from crossforget.index.store import (
    AUDIT,
    VersionContent,
    checkpoint_sha256,
    flat_index,
    ivf_index,
    version_name,
    write_manifest,
    write_version,
)
from crossforget.metrics.keys import I2T, T2I
from crossforget.tasks.hashing.training import LoadedData

RECALL_QUERIES = 200


@dataclass(frozen=True)
class IvfOptions:
    """IndexBinaryIVF settings: ``nlist`` inverted lists, ``nprobe`` of them searched per query."""

    nlist: int
    nprobe: int = 8

    def check(self) -> None:
        if self.nlist < 1 or self.nprobe < 1 or self.nprobe > self.nlist:
            raise CrossforgetError(
                f"--ivf {self.nlist} --nprobe {self.nprobe}: need 1 <= nprobe <= nlist "
                "(e.g. --ivf 64 --nprobe 8)"
            )


def ivf_recall(
    codes: dict[str, np.ndarray],
    ids: np.ndarray,
    queries: dict[str, np.ndarray],
    bits: int,
    ivf: IvfOptions,
    k: int = 10,
) -> dict:
    """Recall@k of IVF against exact search, per direction, on held-out items' codes as queries."""
    out: dict = {"k": k, "queries": int(next(iter(queries.values())).shape[0])}
    for direction, (q_mod, d_mod) in {I2T: ("image", "text"), T2I: ("text", "image")}.items():
        exact_d, exact_i = exact_top_k(flat_index(codes[d_mod], ids, bits), queries[q_mod], k)
        approx = ivf_index(codes[d_mod], ids, bits, ivf.nlist, ivf.nprobe)
        approx_d, approx_i = exact_top_k(approx, queries[q_mod], k)
        out[direction] = {
            "recall": recall_at_k(approx_i, exact_i),
            "tie_aware_recall": tie_aware_recall(approx_d, exact_d),
        }
    return out


def _ivf_info(loaded: LoadedData, codes: dict[str, np.ndarray], bits: int, ivf: IvfOptions) -> dict:
    """The IVF settings and their recall@10 against exact search on held-out database queries."""
    database = loaded.split.database
    held = validation_split(loaded.split, size=RECALL_QUERIES).query
    rows = np.searchsorted(database, held)
    recall = ivf_recall(codes, database, {m: c[rows] for m, c in codes.items()}, bits, ivf)
    return {"nlist": ivf.nlist, "nprobe": ivf.nprobe, "recall_at_10": recall}


def _first_content(
    checkpoint: Path, saved: object, table: ItemTable, codes: dict[str, np.ndarray], ivf: IvfOptions | None
) -> VersionContent:
    """Version 0: every database item, the checkpoint's model files as they are."""
    return VersionContent(
        model=checkpoint,
        ids=table.ids,
        item_ids=table.item_ids,
        labels=table.labels,
        captions=table.captions,
        codes=codes,
        bits=saved.bits,
        ivf={"nlist": ivf.nlist, "nprobe": ivf.nprobe} if ivf is not None else None,
        info={"parent": None, "class_names": saved.class_names, "forgotten_classes": []},
    )


def build_index(
    checkpoint: Path,
    saved: object,
    loaded: LoadedData,
    out: Path,
    ivf: IvfOptions | None = None,
    overwrite: bool = False,
) -> dict:
    """Encode ``loaded``'s database with ``saved`` (loaded from ``checkpoint``) into a new index at
    ``out``, built in a temporary folder and renamed into place. Returns the build record."""
    started = time.perf_counter()
    check_bits(saved.bits)
    loaded.check(saved.config, checkpoint)
    if ivf is not None:
        ivf.check()
    database = loaded.split.database
    store = loaded.store_for(saved.preprocessor)
    timings = {"load": time.perf_counter() - started}
    t = time.perf_counter()
    codes = encode_items(saved.model, store, database)
    timings["encode"] = time.perf_counter() - t
    table = item_table(loaded.data, database)
    ivf_info = _ivf_info(loaded, codes, saved.bits, ivf) if ivf is not None else None
    model_sha = checkpoint_sha256(checkpoint)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_manifest(
            tmp,
            {
                "dataset": loaded.spec.to_dict(),
                "bits": saved.bits,
                "class_names": saved.class_names,
                "source_checkpoint": {"path": str(Path(checkpoint).resolve()), "sha256": model_sha},
                "ivf": ivf_info,
            },
        )
        t = time.perf_counter()
        name, digest = write_version(tmp, 0, _first_content(checkpoint, saved, table, codes, ivf))
        assert name == version_name(0)
        timings["write"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        body = {
            "request": {"kind": "build", "checkpoint": str(Path(checkpoint).resolve())},
            "model_after": model_sha,
            "index_before": None,
            "index_after": {"version": name, "sha256": digest},
            "items_after": int(database.size),
            "ivf": ivf_info,
            "durations": timings,
            "encode_seconds_per_1000_items": 1000 * timings["encode"] / max(1, database.size),
            "environment": environment_stamp(),
        }
        record = AuditLog(tmp / AUDIT, create=True).append("build", body)
    return record.to_dict()
