"""Both tracks behind the ``Task`` protocol: references from the keyed cache, binding and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossforget.data.registry import DatasetSpec
from crossforget.data.scenes.single import generate_scenes_single
from crossforget.engine.reference_cache import cache_key
from crossforget.engine.training import TrainingRecipe
from crossforget.models.classifier import classifier_config
from crossforget.tasks.classification.evaluation import evaluate_classifier
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.track import ClassificationTrack
from crossforget.tasks.hashing.track import HashingTrack
from crossforget.tasks.protocol import Task

TINY_MODEL = {"cnn_width": 4, "feature_dim": 16, "embed_dim": 8}


def _run(track: Task, cache: Path, forget: list[str]) -> tuple[dict, bool, bool]:
    """What a runner does with any track: reference (twice: the second from the cache), bind, score."""
    saved, first = track.reference(cache)
    again, second = track.reference(cache)
    task = track.bind(again, forget)
    assert task.train_forget.size > 0 and task.class_names == list(saved.class_names)
    return track.evaluate(again, again.model, forget), first, second


def test_the_hashing_track(tmp_path: Path):
    spec = DatasetSpec("scenes", {"num_items": 60, "image_size": 32}, 10, 40)
    track = HashingTrack.load(
        spec, 8, recipe=TrainingRecipe(epochs=1, batch_size=16), model_options=TINY_MODEL
    )
    scores, first, second = _run(track, tmp_path, ["dog"])
    assert (first, second) == (False, True)
    assert set(scores) == {"I2T", "T2I"} and all(set(s) == set(track.metric_names) for s in scores.values())


def test_the_classification_track_reads_the_original_table1_caches(tmp_path: Path):
    data = generate_scenes_single(num_train=80, num_test=40, image_size=32, num_classes=4, include=["dog"])
    config = classifier_config("resnet-small", data.num_classes, 32)
    recipe = ClassifierRecipe(epochs=1)
    track = ClassificationTrack(data, config, recipe)
    scores, first, second = _run(track, tmp_path, ["dog"])
    assert (first, second) == (False, True)
    assert set(scores) == set(track.metric_names) - {"mia_shadow"}
    description = {
        "dataset": data.info.get("fingerprint"),
        "model": config,
        "recipe": recipe.to_dict(),
        "seed": 0,
    }
    assert (tmp_path / f"original-{cache_key({'role': 'original', **description})}").is_dir()
    saved, _ = track.reference(tmp_path)
    expected = evaluate_classifier(saved.model, track.store, data, data.class_indices(["dog"]))
    assert scores == pytest.approx(expected)
