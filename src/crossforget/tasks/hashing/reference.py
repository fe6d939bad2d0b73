"""Trained hashing references (Original, Retrain) from the keyed reference cache, or trained and stored.

An entry is keyed by the dataset, bits, recipe, seed, excluded classes and the whole model config
(what ``model_config`` makes of the options, or what a checkpoint recorded): a Retrain made for a
checkpoint therefore finds the one ``demo`` cached for the same Original.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crossforget.engine.reference_cache import cache_key, cached_reference
from crossforget.engine.training import TrainingRecipe
from crossforget.models.features import file_sha256
from crossforget.tasks.hashing.checkpoint import (
    HashingCheckpoint,
    load_hashing_checkpoint,
    save_hashing_checkpoint,
)
from crossforget.tasks.hashing.task import attach_full_fisher
from crossforget.tasks.hashing.training import LoadedData, model_config, train_hashing


def reference_key(
    loaded: LoadedData, recipe: TrainingRecipe, seed: int, exclude: Sequence[str], model: dict
) -> str:
    """The cache key of a reference trained with the model config ``model`` (bits included)."""
    description = {
        "dataset": loaded.spec.to_dict(),
        "bits": int(model["bits"]),
        "recipe": recipe.to_dict(),
        "seed": seed,
        "exclude": sorted(exclude),
        "model_config": model,
    }
    if isinstance(model.get("features"), dict):  # cached embeddings: a re-extracted file is another entry
        description["features_sha256"] = file_sha256(model["features"]["path"])
    return cache_key(description)


def trained_reference(
    cache_dir: Path,
    loaded: LoadedData,
    bits: int,
    recipe: TrainingRecipe,
    seed: int,
    exclude: Sequence[str] = (),
    model_options: dict | None = None,
    store_fisher: bool = False,
    model: dict | None = None,
) -> tuple[HashingCheckpoint, bool]:
    """Load the checkpoint from the cache, or train and store it; returns (checkpoint, was_cached).

    ``model``: a recorded model config (an Original's) to train with as is; otherwise ``model_options``
    go through ``model_config`` at ``bits``.
    """
    if model is None:
        model = model_config(loaded.data, loaded.split, bits, model_options or {}, loaded.spec)
    kind = "retrain-" + "-".join(sorted(exclude)) if exclude else "original"
    folder = cache_dir / f"{kind}-{model['bits']}bits-{reference_key(loaded, recipe, seed, exclude, model)}"

    def load(entry: Path) -> HashingCheckpoint:
        saved = load_hashing_checkpoint(entry, loaded.device)
        loaded.check(saved.config, entry)  # a stale entry (other data) is rebuilt
        return saved

    def complete(saved: HashingCheckpoint) -> bool:
        if store_fisher and not saved.fisher:
            attach_full_fisher(saved, loaded)
            return True
        return False

    return cached_reference(
        folder,
        load,
        save_hashing_checkpoint,
        lambda: train_hashing(loaded, int(model["bits"]), recipe, seed, exclude, model=model),
        complete,
    )
