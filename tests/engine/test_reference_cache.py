"""The keyed reference cache: built once, then read back; damaged entries rebuilt, completed ones stored."""

from __future__ import annotations

import pytest
import torch

from crossforget.engine.reference_cache import cache_key, cached_reference
from crossforget.models.classifier import build_classifier, classifier_config
from crossforget.tasks.classification.checkpoint import (
    ClassifierCheckpoint,
    load_classifier_checkpoint,
    save_classifier_checkpoint,
)
from crossforget.tasks.classification.recipe import ClassifierRecipe


@pytest.fixture
def saved() -> ClassifierCheckpoint:
    config = classifier_config("resnet-small", 4, 32)
    torch.manual_seed(0)
    model, preprocessor = build_classifier(config)
    meta = {
        "model": config,
        "class_names": list("abcd"),
        "training": {"recipe": ClassifierRecipe().to_dict()},
    }
    return ClassifierCheckpoint(model.eval(), preprocessor, meta)


def _cached(folder, build, complete=lambda _: False):
    return cached_reference(folder, load_classifier_checkpoint, save_classifier_checkpoint, build, complete)


def test_cache_reuses_a_stored_checkpoint(saved, tmp_path):
    calls = []

    def build():
        calls.append(1)
        return saved

    first, hit1 = _cached(tmp_path / "entry", build)
    second, hit2 = _cached(tmp_path / "entry", build)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(second.model(images), saved.model(images))
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_a_damaged_entry_is_rebuilt_and_a_completed_one_stored_again(saved, tmp_path):
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    _, hit = _cached(folder, lambda: saved)
    assert not hit

    def complete(found: ClassifierCheckpoint) -> bool:
        if found.fisher:
            return False
        found.fisher = {n: torch.ones_like(p) for n, p in found.model.named_parameters()}
        return True

    again, hit = _cached(folder, lambda: saved, complete)
    assert hit and again.fisher
    assert load_classifier_checkpoint(folder).fisher.keys() == again.fisher.keys()


def test_the_key_keeps_its_format():
    # sha256 of the sorted JSON with the package version, first 16 hex digits (entries already on disk)
    import hashlib
    import json

    from crossforget import __version__

    text = json.dumps({"a": 1, "version": __version__}, sort_keys=True)
    assert cache_key({"a": 1}) == hashlib.sha256(text.encode()).hexdigest()[:16]
