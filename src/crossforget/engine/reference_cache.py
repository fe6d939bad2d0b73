"""Cache of trained reference models (Original, Retrain), keyed by everything that changes them.

Training dominates the cost of a comparison; a second ``demo`` run reuses the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from crossforget import __version__
from crossforget.core import distributed
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory
from crossforget.engine.training import TrainingRecipe
from crossforget.tasks.hashing.checkpoint import (
    HashingCheckpoint,
    load_hashing_checkpoint,
    save_hashing_checkpoint,
)
from crossforget.tasks.hashing.task import attach_full_fisher
from crossforget.tasks.hashing.training import (
    DEFAULT_IMAGE_SIZE,
    LoadedData,
    native_image_size,
    train_hashing,
)


def cache_key(
    loaded: LoadedData,
    bits: int,
    recipe: TrainingRecipe,
    seed: int,
    exclude: Sequence[str],
    model_options: dict,
) -> str:
    model = dict(model_options)
    if model.get("backbone", "small") == "small":  # the input size model_config would pick, made explicit
        model.setdefault("image_size", native_image_size(loaded.data) or DEFAULT_IMAGE_SIZE)
    description = {
        "dataset": loaded.spec.to_dict(),
        "bits": bits,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "exclude": sorted(exclude),
        "model": model,
        "version": __version__,
    }
    if model_options.get("features"):  # cached embeddings: a re-extracted file must not hit the old entry
        from crossforget.models.features import file_sha256

        description["features_sha256"] = file_sha256(model_options["features"])
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def trained_reference(
    cache_dir: Path,
    loaded: LoadedData,
    bits: int,
    recipe: TrainingRecipe,
    seed: int,
    exclude: Sequence[str] = (),
    model_options: dict | None = None,
    store_fisher: bool = False,
) -> tuple[HashingCheckpoint, bool]:
    """Load the checkpoint from the cache, or train and store it; returns (checkpoint, was_cached)."""
    options = model_options or {}
    kind = "retrain-" + "-".join(sorted(exclude)) if exclude else "original"
    folder = cache_dir / f"{kind}-{bits}bits-{cache_key(loaded, bits, recipe, seed, exclude, options)}"
    saved, cached = None, False
    if (folder / "config.json").is_file():
        try:
            saved, cached = load_hashing_checkpoint(folder, loaded.device), True
            loaded.check(saved.config, folder)
        except CrossforgetError:
            saved, cached = None, False  # a damaged or stale entry (other data) is simply rebuilt
    # Under torchrun every rank must take the same branch (training runs on all of them).
    distributed.agree(cached, f"whether cache entry {folder} is usable (give every node the same --cache)")
    if saved is None:
        saved = train_hashing(loaded, bits, recipe, seed, exclude, options)
    if store_fisher and not saved.fisher:
        attach_full_fisher(saved, loaded)
    elif cached:
        return saved, True
    with atomic_directory(folder, overwrite=True) as tmp:  # whole or absent, whatever kills the run
        save_hashing_checkpoint(tmp, saved)
    return saved, cached
