"""Evaluate one or several hashing checkpoints (one per bit length) under a forget request."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from crossforget.core.checkpoint import CONFIG
from crossforget.core.errors import CrossforgetError
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.registry import load_dataset
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.evaluation import METRICS, evaluate_model
from crossforget.tasks.hashing.training import LoadedData


def checkpoint_dirs(path: Path) -> list[Path]:
    """A checkpoint folder itself, or its ``bits*`` subfolders sorted by bit length."""
    if (path / CONFIG).is_file():
        return [path]
    # Only bits<digits> folders: a sibling such as bits_backup/ is not a checkpoint of this run.
    found = sorted(
        (p for p in path.glob("bits*") if p.name[4:].isdigit() and (p / CONFIG).is_file()),
        key=lambda p: int(p.name.removeprefix("bits")),
    )
    if not found:
        raise CrossforgetError(
            f"{path} holds no checkpoint (config.json) nor bits<B>/ checkpoints; "
            "point --checkpoint at the output of `crossforget train`"
        )
    return found


def evaluate_checkpoints(
    dirs: Sequence[Path],
    forget: Sequence[str],
    topk: int | None = None,
    device: torch.device | None = None,
    num_workers: int = 0,
    memory_budget: int = 4 << 30,
) -> dict:
    """Each checkpoint on ``device``; the dataset and its batch store are shared while they match."""
    request = ForgetRequest(forget)
    records = []
    loaded: LoadedData | None = None
    for directory in dirs:
        saved = load_hashing_checkpoint(directory, device)
        spec = saved.dataset_spec
        if loaded is None or loaded.spec != spec:
            data, split = load_dataset(spec)
            loaded = LoadedData(
                spec, data, split, device=device, num_workers=num_workers, memory_budget=memory_budget
            )
        loaded.check(saved.config, directory)
        data, split = loaded.data, loaded.split
        store = loaded.store_for(saved.preprocessor, device)
        part = partition(data, split, request)
        for record in evaluate_model(saved.model, store, split, part, topk):
            records.append({"bits": saved.bits, **record})
    return {
        "forget": list(request.classes),
        "topk": topk,
        "checkpoints": [str(d) for d in dirs],
        "records": records,
        "environment": environment_stamp(),
    }


def evaluation_rows(results: dict) -> tuple[list[str], list[list]]:
    columns = ["setting"] + [METRICS[m] for m in METRICS] + [f"chance {METRICS[m]}" for m in METRICS]
    rows = []
    for r in results["records"]:
        rows.append(
            [f"{r['bits']}-{r['direction']}"]
            + [100 * r[m] for m in METRICS]
            + [100 * r["chance"][m] for m in METRICS]
        )
    return columns, rows
