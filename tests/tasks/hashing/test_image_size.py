"""``--data-option image_size``: the small model trains at the size the scenes were drawn at, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossforget.data.registry import DatasetSpec
from crossforget.engine.training import TrainingRecipe
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.reference import reference_key
from crossforget.tasks.hashing.training import load_data, model_config, train_hashing

TINY_MODEL = {"cnn_width": 4, "feature_dim": 16, "embed_dim": 8}


def _train_and_watch(size: int, options: dict) -> tuple[dict, list[tuple[int, ...]], object]:
    """Train one epoch on scenes drawn at ``size`` px; the shapes the first convolution was fed."""
    loaded = load_data(DatasetSpec("scenes", {"num_items": 60, "image_size": size}, 10, 40))
    seen: list[tuple[int, ...]] = []
    original = torch.nn.Conv2d.forward

    def watch(self: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 3:
            seen.append(tuple(x.shape))
        return original(self, x)

    torch.nn.Conv2d.forward = watch
    try:
        saved = train_hashing(loaded, 16, TrainingRecipe(epochs=1, batch_size=16), 0, (), options, False)
    finally:
        torch.nn.Conv2d.forward = original
    return saved.config, seen, loaded


@pytest.mark.parametrize("size", [32, 64])
def test_scenes_drawn_at_a_size_train_at_that_size(size: int):
    config, seen, loaded = _train_and_watch(size, TINY_MODEL)
    assert config["model"]["image_size"] == size
    assert loaded.store.pixels.shape[1:] == (size, size, 3)  # decoded as drawn, no resize
    assert seen and all(shape[1:] == (3, size, size) for shape in seen)


def test_an_explicit_model_size_is_honoured_and_recorded():
    # --model-option image_size=48 on 32-px scenes: upscaled on purpose, and the config says 48
    config, seen, _ = _train_and_watch(32, {**TINY_MODEL, "image_size": 48})
    assert config["model"]["image_size"] == 48
    assert all(shape[1:] == (3, 48, 48) for shape in seen)


def test_retrain_rebuilds_the_size_the_original_was_trained_at():
    # 64-px scenes read at 48 px: Retrain is keyed and built by the recorded config, so it keeps the 48
    loaded = load_data(DatasetSpec("scenes", {"num_items": 60, "image_size": 64}, 10, 40))
    config = model_config(loaded.data, loaded.split, 16, {**TINY_MODEL, "image_size": 48}, loaded.spec)
    native = model_config(loaded.data, loaded.split, 16, TINY_MODEL, loaded.spec)
    assert (config["image_size"], native["image_size"]) == (48, 64)
    recipe = TrainingRecipe()
    assert reference_key(loaded, recipe, 0, ["dog"], config) != reference_key(
        loaded, recipe, 0, ["dog"], native
    )


def test_the_cli_trains_32_pixel_scenes_at_32_pixels(tiny_checkpoint: Path):
    # tiny_checkpoint: `crossforget train --data-option image_size=32 ...`
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    assert saved.config["model"]["image_size"] == 32 and saved.preprocessor.image_size == 32
    assert saved.config["dataset"]["options"]["image_size"] == 32
