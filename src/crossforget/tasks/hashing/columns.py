"""The hashing track's columns: how one method's model at one seed is made and scored.

Every hashing experiment (Table 2, the sweeps, the request panel, tuning) runs the same columns: the
Original as trained, Retrain from the reference cache, any other method on the Original. They live
here, below the experiments, so no experiment borrows another's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.data.forget import ForgetPartition, ForgetRequest
from crossforget.data.splits import RetrievalSplit
from crossforget.engine.training import TrainingRecipe
from crossforget.metrics.keys import RETRIEVAL
from crossforget.models.inputs import BatchSource
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint, load_hashing_checkpoint
from crossforget.tasks.hashing.evaluation import evaluate_model
from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs
from crossforget.tasks.hashing.reference import trained_reference
from crossforget.tasks.hashing.result_cache import CHECKPOINT_METHODS, MethodCall, ResultCache
from crossforget.tasks.hashing.task import attach_full_fisher, run_method
from crossforget.tasks.hashing.training import LoadedData, load_data
from crossforget.unlearning.methods import create_method, find_method, method_label


def column_label(method: str) -> str:
    """A method's label in the hashing tables and figures: its own label, with the table's footnote
    mark * where the method comes from classification and its hashing form is our extension."""
    info = find_method(method)
    return method_label(method) + ("*" if info is not None and info.hashing_extension else "")


@dataclass(frozen=True)
class ReferenceRecipe:
    """How Retrain is made: the Original's recipe and seed, cached in ``cache_dir``; the model config is
    the one the Original recorded."""

    cache_dir: Path
    recipe: TrainingRecipe
    seed: int

    @classmethod
    def of_checkpoint(cls, saved: HashingCheckpoint, cache_dir: Path) -> ReferenceRecipe:
        """The recipe that trained an Original checkpoint (refuses Retrain and unlearned checkpoints)."""
        training = saved.config["training"]
        if training.get("excluded_classes") or saved.config.get("unlearning"):
            raise CrossforgetError(
                "this command needs an Original checkpoint (from `crossforget train` without "
                "--exclude), not a Retrain or unlearned one"
            )
        return cls(cache_dir, TrainingRecipe.from_dict(training["recipe"]), int(training["seed"]))

    def retrain(
        self, loaded: LoadedData, original: HashingCheckpoint, exclude: Sequence[str]
    ) -> tuple[HashingCheckpoint, bool]:
        """Retrain of ``original`` without ``exclude`` (its model config as recorded); (model, was_cached)."""
        model = original.config["model"]
        return trained_reference(
            self.cache_dir, loaded, original.bits, self.recipe, self.seed, exclude, model=model
        )


def run_column(
    method: str,
    seed: int,
    original: HashingCheckpoint,
    loaded: LoadedData,
    request: ForgetRequest,
    reference: ReferenceRecipe,
    options: dict | None = None,
    cache: ResultCache | None = None,
) -> tuple[nn.Module, dict, dict]:
    """(model, timings, diagnostics) of one column at one seed: Original as is, Retrain from the cache,
    any other method run on the Original with ``options`` (from ``cache`` for ``CHECKPOINT_METHODS``)."""
    if method == "original":
        return original.model, {}, {}
    if method == "retrain":
        retrain, cached = reference.retrain(loaded, original, request.classes)
        return retrain.model, {"train": retrain.config["training"]["seconds"]}, {"cached": cached}
    unlearning = create_method(method, **(options or {}))

    def run() -> tuple[HashingCheckpoint, dict, dict]:
        new, outcome = run_method(unlearning, original, loaded, request, seed)
        return new, outcome.timings, outcome.diagnostics

    if cache is None or method not in CHECKPOINT_METHODS:
        new, timings, diagnostics = run()
        return new.model, timings, diagnostics
    settings = dataclasses.asdict(unlearning.options)
    call = MethodCall(method, settings, original, request, seed)
    new, timings, diagnostics, _ = cache.method_checkpoint(call, run)
    return new.model, timings, diagnostics


def column_scores(
    model: nn.Module, store: BatchSource, split: RetrievalSplit, part: ForgetPartition
) -> dict[str, dict[str, float]]:
    """{direction: {metric: value}} over ``RETRIEVAL`` as fractions (the per-seed record of every runner)."""
    return {r["direction"]: {k: r[k] for k in RETRIEVAL} for r in evaluate_model(model, store, split, part)}


@dataclass
class OriginalCheckpoints:
    """The Original checkpoints of one folder (one per bit length), their data and how to retrain them."""

    saved: list[HashingCheckpoint]
    references: list[ReferenceRecipe]
    loaded: LoadedData
    path: Path

    @property
    def bits(self) -> list[int]:
        return [s.bits for s in self.saved]

    @property
    def class_names(self) -> list[str]:
        return list(self.loaded.data.class_names)


def open_checkpoints(
    path: Path,
    bits: Sequence[int] | None,
    cache_dir: Path,
    device: torch.device | None = None,
    num_workers: int = 0,
    memory_budget: int = 4 << 30,
    full_fisher: bool = False,
) -> OriginalCheckpoints:
    """Load the Original checkpoints of ``path`` (only ``bits`` when given) and their dataset once.

    ``full_fisher``: compute SSD's full-training-set Fisher once per checkpoint (in memory) unless it was
    stored at training, rather than once per seed or trial.
    """
    dirs = checkpoint_dirs(path)
    saved = [load_hashing_checkpoint(d, device) for d in dirs]
    if bits:
        available = [s.bits for s in saved]
        missing = sorted(set(bits) - set(available))
        if missing:
            raise CrossforgetError(
                f"{path} has no checkpoint for {missing} bits; it holds {available} (drop or change --bits)"
            )
        saved = [s for s in saved if s.bits in set(bits)]
    if any(s.dataset_spec != saved[0].dataset_spec for s in saved):
        raise CrossforgetError(
            f"the checkpoints in {path} were trained on different data; give one folder per run"
        )
    references = [ReferenceRecipe.of_checkpoint(s, cache_dir) for s in saved]
    loaded = load_data(saved[0].dataset_spec, device, num_workers, memory_budget)
    for checkpoint in saved:
        loaded.check(checkpoint.config, f"{path} ({checkpoint.bits} bits)")
    if full_fisher:
        for checkpoint in saved:
            if not checkpoint.fisher:
                attach_full_fisher(checkpoint, loaded)
    return OriginalCheckpoints(saved, references, loaded, path)
