"""Cache of the comparison's other deterministic results: training-based methods' checkpoints, scores.

Beside the trained references (``reference_cache``), a second ``demo`` would redo Finetune's epochs and
every column's evaluation although nothing changed. Here both are kept in the same cache folder:

- ``CHECKPOINT_METHODS`` (Finetune) store their unlearned checkpoint, keyed like Retrain in the
  reference cache, with the Original itself in place of its recipe: method, validated options, forget
  classes, seed, the digests of the Original's weights, proxies, prototypes and stored Fisher, its
  recipe and model config, the data and the split;
- every other method's column stores a record under the same key: the digest of the model it made,
  its timings and diagnostics (the model is not kept: it is cheap to make again if ever needed);
- every column's scores, keyed by the digest of the model's weights, its inputs (image size,
  normalisation, tokenizer), the data, the split, the forget partition, ``topk`` and
  ``EVALUATION_VERSION`` (bump it when evaluation or a metric changes what it returns).

So a second run with nothing changed runs no method and evaluates nothing: it reads and prints.
Both keys also hold ``source_digest()``, the digest of the package's own source files, so an edited
method or metric is run again even when the version number did not move (the trained references of
``reference_cache`` are not keyed by it: retraining on every edit would cost minutes).

The data enter every key as the dataset spec, its fingerprint and a digest of the images (their pixels
when in memory, path, size and modification time of files). Entries are written whole or not at all
(temporary name, then rename); what a killed run leaves is removed by the next write, and an entry
that cannot be read or does not match its key is recomputed and replaced, never fatal.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossforget import __version__
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory, atomic_write_json, remove_stale_temporaries
from crossforget.data.container import ArrayImages, FileImages, MultiModalData
from crossforget.data.forget import ForgetPartition, ForgetRequest
from crossforget.metrics.keys import DIRECTIONS, RETRIEVAL
from crossforget.models.inputs import BatchSource
from crossforget.tasks.hashing.checkpoint import (
    HashingCheckpoint,
    load_hashing_checkpoint,
    save_hashing_checkpoint,
)
from crossforget.tasks.hashing.training import LoadedData

EVALUATION_VERSION = 1
CHECKPOINT_METHODS = ("finetune",)  # methods whose unlearned checkpoint is kept (they train)
Scores = dict[str, dict[str, float]]


@functools.cache
def source_digest() -> str:
    """Digest of every ``.py`` file of the installed crossforget package (path and content)."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _json_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _array_digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    head = json.dumps([str(array.dtype), list(array.shape)]).encode()
    return hashlib.sha256(head + array.tobytes()).hexdigest()


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order (layout-independent)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(json.dumps([name, str(tensor.dtype), list(tensors[name].shape)]).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_digest(module: nn.Module) -> str:
    """The digest of a module's state (weights and buffers such as BatchNorm statistics)."""
    return tensors_digest(module.state_dict())


def images_digest(data: MultiModalData) -> str:
    """Pixels of in-memory images; path, size and modification time of image files."""
    images = data.images
    if isinstance(images, ArrayImages):
        return _array_digest(images.array)
    if isinstance(images, FileImages):
        stats = []
        for path in images.paths:
            try:
                st = os.stat(path)
                stats.append([str(path), st.st_size, st.st_mtime_ns])
            except OSError:
                stats.append([str(path), None, None])
        return _json_digest(stats)
    return _json_digest({"kind": type(images).__name__, "items": len(data)})


def valid_scores(value: object) -> bool:
    """Whether ``value`` has the shape ``column_scores`` returns: direction -> metric -> number."""
    if not isinstance(value, dict) or set(value) != set(DIRECTIONS):
        return False
    for metrics in value.values():
        if not isinstance(metrics, dict) or set(metrics) != set(RETRIEVAL):
            return False
        for number in metrics.values():
            if isinstance(number, bool) or not isinstance(number, int | float):
                return False
            if not (math.isfinite(number) or math.isnan(number)):
                return False
    return True


@dataclass(frozen=True)
class MethodCall:
    """One unlearning method run on an Original: what its column and checkpoint entries are keyed by."""

    method: str
    options: Mapping
    original: HashingCheckpoint
    request: ForgetRequest
    seed: int


class ResultCache:
    """The cache entries of one comparison (one data set, split and forget request) in ``cache_dir``.

    The data's part of every key is computed once, here.
    """

    def __init__(self, cache_dir: str | Path, loaded: LoadedData, part: ForgetPartition) -> None:
        self.cache_dir = Path(cache_dir)
        self.loaded = loaded
        self.data = {
            "dataset": loaded.spec.to_dict(),
            "fingerprint": loaded.fingerprint(),
            "images": images_digest(loaded.data),
            "generator": loaded.data.info.get("params") if isinstance(loaded.data.info, dict) else None,
        }
        split = loaded.split
        self.split = {
            "query": _array_digest(np.asarray(split.query)),
            "database": _array_digest(np.asarray(split.database)),
            "train": _array_digest(np.asarray(split.train)),
        }
        self.partition = {
            "forget_classes": [int(c) for c in part.forget_classes],
            "query_forget": _array_digest(np.asarray(part.query_forget)),
        }

    # --- evaluations ----------------------------------------------------------------------------

    def evaluation_key(self, model: nn.Module | str, store: BatchSource, topk: int | None = None) -> str:
        """The key of ``model``'s scores (``model`` may be given as its ``state_digest``)."""
        description = {
            "model": model if isinstance(model, str) else state_digest(model),
            "inputs": _json_digest(store.preprocessor.to_config()),
            "data": self.data,
            "split": self.split,
            "partition": self.partition,
            "topk": topk,
            "evaluation_version": EVALUATION_VERSION,
            "version": __version__,
            "code": source_digest(),
        }
        return _json_digest(description)[:32]

    def evaluation_path(self, key: str) -> Path:
        return self.cache_dir / "evaluations" / f"{key}.json"

    def scores(
        self,
        model: nn.Module | str,
        store: BatchSource,
        compute: Callable[[], Scores],
        topk: int | None = None,
    ) -> tuple[Scores, bool]:
        """The cached scores of ``model`` (or of its digest), else ``compute()`` stored; returns
        (scores, was_cached)."""
        key = self.evaluation_key(model, store, topk)
        stored = self.stored_scores(key)
        if stored is not None:
            return stored, True
        path = self.evaluation_path(key)
        scores = compute()
        if valid_scores(scores):
            remove_stale_temporaries(path)
            atomic_write_json(path, {"key": key, "evaluation_version": EVALUATION_VERSION, "scores": scores})
        return scores, False

    def stored_scores(self, key: str) -> Scores | None:
        stored = _read_json(self.evaluation_path(key))
        if isinstance(stored, dict) and stored.get("key") == key and valid_scores(stored.get("scores")):
            return stored["scores"]
        return None

    # --- method columns -------------------------------------------------------------------------

    def column(
        self,
        call: MethodCall,
        store: BatchSource,
        run: Callable[[], tuple[nn.Module, dict, dict]],
        score: Callable[[nn.Module], Scores],
    ) -> tuple[Scores, dict, dict, bool]:
        """A method's column: its record and scores when both are cached, else ``run()`` (-> model,
        timings, diagnostics) and ``score(model)``, both stored. Returns (scores, timings, diagnostics,
        was_cached); a cached column's timings and diagnostics are those of the run that made it."""
        key = self.method_key(call)
        path = self.cache_dir / "columns" / f"{call.method}-{key}.json"
        record = _read_json(path)
        if (
            isinstance(record, dict)
            and record.get("key") == key
            and isinstance(record.get("model"), str)
            and isinstance(record.get("timings"), dict)
            and isinstance(record.get("diagnostics"), dict)
        ):
            stored = self.stored_scores(self.evaluation_key(record["model"], store))
            if stored is not None:
                return stored, record["timings"], record["diagnostics"], True
        model, timings, diagnostics = run()
        digest = state_digest(model)
        scores, _ = self.scores(digest, store, lambda: score(model))
        entry = {"key": key, "model": digest, "timings": timings, "diagnostics": diagnostics}
        remove_stale_temporaries(path)
        atomic_write_json(path, _plain_json(entry))
        return scores, timings, diagnostics, False

    # --- unlearned checkpoints ------------------------------------------------------------------

    def method_key(self, call: MethodCall) -> str:
        original = call.original
        description = {
            "method": call.method,
            "options": dict(call.options),
            "forget": list(call.request.classes),
            "seed": int(call.seed),
            "original": {
                "model": state_digest(original.model),
                "loss": state_digest(original.loss),
                "prototypes": tensors_digest(original.prototypes),
                "fisher": tensors_digest(original.fisher),
                "recipe": original.config["training"]["recipe"],
                "config": _json_digest(original.config["model"]),
            },
            "data": self.data,
            "split": self.split,
            "version": __version__,
            "code": source_digest(),
        }
        return _json_digest(description)[:16]

    def method_checkpoint(
        self, call: MethodCall, run: Callable[[], tuple[HashingCheckpoint, dict, dict]]
    ) -> tuple[HashingCheckpoint, dict, dict, bool]:
        """The cached unlearned checkpoint, else ``run()`` (-> checkpoint, timings, diagnostics) stored.

        Returns (checkpoint, timings, diagnostics, was_cached); timings and diagnostics of a cached entry
        are those of the run that made it.
        """
        key = self.method_key(call)
        folder = self.cache_dir / f"{call.method}-{call.original.bits}bits-{key}"
        if (folder / "config.json").is_file():
            try:
                saved = load_hashing_checkpoint(folder, self.loaded.device)
                self.loaded.check(saved.config, folder)
                record = saved.config.get("cache")
                if isinstance(record, dict) and record.get("key") == key:
                    return saved, dict(record["timings"]), dict(record["diagnostics"]), True
            except (CrossforgetError, KeyError, TypeError, ValueError):
                pass  # damaged or stale: rebuilt below
        new, timings, diagnostics = run()
        record = {"key": key, "timings": timings, "diagnostics": diagnostics}
        stored = copy.copy(new)
        stored.config = {**new.config, "cache": _plain_json(record)}
        with atomic_directory(folder, overwrite=True) as tmp:
            save_hashing_checkpoint(tmp, stored)
        return new, timings, diagnostics, False


def _plain(value: object) -> object:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _plain_json(value: object) -> Any:
    """``value`` as it reads back from JSON (numpy scalars and arrays as lists, anything else as text)."""
    return json.loads(json.dumps(value, default=_plain))


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, unreadable, damaged: recompute
        return None
