"""The demo's result cache: evaluations and Finetune checkpoints are reused, rebuilt when damaged or stale."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from crossforget.data.forget import ForgetRequest, partition
from crossforget.tasks.hashing import result_cache
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.columns import column_scores
from crossforget.tasks.hashing.result_cache import MethodCall, ResultCache, state_digest
from crossforget.tasks.hashing.task import run_method, store_for
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method


@pytest.fixture(scope="module")
def setting(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    part = partition(loaded.data, loaded.split, ForgetRequest(["dog"]))
    return saved, loaded, part, store_for(saved, loaded)


class Counter:
    """``compute`` for ``ResultCache.scores`` that counts its calls."""

    def __init__(self, model, store, loaded, part) -> None:
        self.calls = 0
        self.args = (model, store, loaded.split, part)

    def __call__(self) -> dict:
        self.calls += 1
        return column_scores(*self.args)


def test_scores_are_computed_once_then_read(setting, tmp_path: Path):
    saved, loaded, part, store = setting
    cache = ResultCache(tmp_path, loaded, part)
    compute = Counter(saved.model, store, loaded, part)
    first, hit = cache.scores(saved.model, store, compute)
    assert not hit and compute.calls == 1
    again, hit = cache.scores(saved.model, store, compute)
    assert hit and compute.calls == 1 and again == first
    # another cache object (the next run) reads the same entry; a changed weight is another model
    assert ResultCache(tmp_path, loaded, part).scores(saved.model, store, compute) == (first, True)
    changed = copy.deepcopy(saved.model)
    with torch.no_grad():
        changed.image_head.linear.bias[0] += 1e-3
    _, hit = cache.scores(changed, store, Counter(changed, store, loaded, part))
    assert not hit
    assert len(list((tmp_path / "evaluations").glob("*.json"))) == 2


def test_every_input_of_the_scores_changes_the_key(setting, tmp_path: Path, monkeypatch):
    saved, loaded, part, store = setting
    base = ResultCache(tmp_path, loaded, part).evaluation_key(saved.model, store)
    assert ResultCache(tmp_path, loaded, part).evaluation_key(saved.model, store) == base
    assert ResultCache(tmp_path, loaded, part).evaluation_key(saved.model, store, topk=10) != base
    other_request = partition(loaded.data, loaded.split, ForgetRequest(["dog", "cat"]))
    assert ResultCache(tmp_path, loaded, other_request).evaluation_key(saved.model, store) != base
    moved = copy.copy(loaded)
    moved.split = dataclasses.replace(loaded.split, query=loaded.split.query[::-1].copy())
    assert ResultCache(tmp_path, moved, part).evaluation_key(saved.model, store) != base
    repainted = copy.copy(loaded)
    repainted.data = copy.copy(loaded.data)
    pixels = loaded.data.images.array.copy()
    pixels[0, 0, 0, 0] ^= 1
    repainted.data.images = type(loaded.data.images)(pixels)
    assert ResultCache(tmp_path, repainted, part).evaluation_key(saved.model, store) != base
    monkeypatch.setattr(result_cache, "EVALUATION_VERSION", result_cache.EVALUATION_VERSION + 1)
    assert ResultCache(tmp_path, loaded, part).evaluation_key(saved.model, store) != base
    monkeypatch.setattr(result_cache, "EVALUATION_VERSION", result_cache.EVALUATION_VERSION - 1)
    assert ResultCache(tmp_path, loaded, part).evaluation_key(saved.model, store) == base
    monkeypatch.setattr(result_cache, "source_digest", lambda: "edited source")
    assert ResultCache(tmp_path, loaded, part).evaluation_key(saved.model, store) != base


def test_source_digest_follows_the_package_files(tmp_path: Path, monkeypatch):
    """An edited module gives another digest: method columns are then run again."""
    (tmp_path / "crossforget" / "tasks" / "hashing").mkdir(parents=True)
    (tmp_path / "crossforget" / "a.py").write_text("x = 1\n")
    fake = tmp_path / "crossforget" / "tasks" / "hashing" / "result_cache.py"
    fake.write_text("")
    monkeypatch.setattr(result_cache, "__file__", str(fake))
    result_cache.source_digest.cache_clear()
    try:
        first = result_cache.source_digest()
        (tmp_path / "crossforget" / "a.py").write_text("x = 2\n")
        result_cache.source_digest.cache_clear()
        assert result_cache.source_digest() != first
    finally:
        result_cache.source_digest.cache_clear()


@pytest.mark.parametrize(
    "damage",
    ["", "{not json", '{"key": "other", "scores": {}}', "[1, 2]", "scores-without-a-direction"],
)
def test_a_damaged_evaluation_entry_is_recomputed_and_replaced(setting, tmp_path: Path, damage: str):
    saved, loaded, part, store = setting
    cache = ResultCache(tmp_path, loaded, part)
    first, _ = cache.scores(saved.model, store, Counter(saved.model, store, loaded, part))
    path = cache.evaluation_path(cache.evaluation_key(saved.model, store))
    if damage == "scores-without-a-direction":
        entry = json.loads(path.read_text())
        del entry["scores"]["T2I"]
        damage = json.dumps(entry)
    path.write_text(damage)
    compute = Counter(saved.model, store, loaded, part)
    again, hit = cache.scores(saved.model, store, compute)
    assert not hit and compute.calls == 1 and again == first
    assert cache.scores(saved.model, store, compute) == (first, True)


def _dead_pid() -> int:
    pid = 2**22 - 7
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_what_a_killed_run_left_is_ignored_then_removed(setting, tmp_path: Path):
    saved, loaded, part, store = setting
    cache = ResultCache(tmp_path, loaded, part)
    path = cache.evaluation_path(cache.evaluation_key(saved.model, store))
    path.parent.mkdir(parents=True)
    leftover = path.parent / f".{path.name}.{_dead_pid()}.abc.tmp"  # a SIGKILL between write and rename
    leftover.write_text('{"key": "half')
    _, hit = cache.scores(saved.model, store, Counter(saved.model, store, loaded, part))
    assert not hit and path.is_file() and not leftover.exists()


def test_finetune_checkpoints_are_cached_keyed_by_the_original(setting, tmp_path: Path):
    saved, loaded, part, _ = setting
    request = ForgetRequest(["dog"])
    cache = ResultCache(tmp_path, loaded, part)
    runs = []

    def run():
        runs.append(1)
        new, outcome = run_method(create_method("finetune", epochs=1), saved, loaded, request, 0)
        return new, outcome.timings, outcome.diagnostics

    options = {"epochs": 1, "lr_scale": 1.0}
    new, timings, diagnostics, hit = cache.method_checkpoint(
        MethodCall("finetune", options, saved, request, 0), run
    )
    assert not hit and runs == [1] and diagnostics["epochs"] == 1
    (folder,) = tmp_path.glob("finetune-16bits-*")
    again, timings2, diagnostics2, hit = cache.method_checkpoint(
        MethodCall("finetune", options, saved, request, 0), run
    )
    assert hit and runs == [1] and (timings2, diagnostics2) == (timings, diagnostics)
    assert state_digest(again.model) == state_digest(new.model)
    # another seed, other options or another Original are other entries
    keys = {
        cache.method_key(MethodCall("finetune", options, saved, request, 1)),
        cache.method_key(MethodCall("finetune", {**options, "epochs": 2}, saved, request, 0)),
        cache.method_key(MethodCall("finetune", options, saved, ForgetRequest(["cat"]), 0)),
        cache.method_key(MethodCall("finetune", options, saved, request, 0)),
    }
    other = copy.deepcopy(saved)
    with torch.no_grad():
        other.loss.proxies[0, 0] += 1.0
    keys.add(cache.method_key(MethodCall("finetune", options, other, request, 0)))
    assert len(keys) == 5
    # damaged weights: rebuilt, not fatal; a killed write's folder is removed on the next write
    (folder / "weights.safetensors").write_bytes(b"garbage")
    stale = folder.with_name(f".{folder.name}.{_dead_pid()}.xyz.tmp")
    stale.mkdir()
    rebuilt, _, _, hit = cache.method_checkpoint(MethodCall("finetune", options, saved, request, 0), run)
    assert not hit and runs == [1, 1] and not stale.exists()
    assert np.allclose(
        rebuilt.model.image_head.linear.weight.detach().numpy(),
        new.model.image_head.linear.weight.detach().numpy(),
    )
    assert cache.method_checkpoint(MethodCall("finetune", options, saved, request, 0), run)[3] is True


def test_a_method_column_is_read_whole_when_its_model_was_scored(setting, tmp_path: Path, monkeypatch):
    saved, loaded, part, store = setting
    request = ForgetRequest(["dog"])
    cache = ResultCache(tmp_path, loaded, part)
    calls = {"run": 0, "score": 0}

    def run():
        calls["run"] += 1
        new, outcome = run_method(create_method("bad_model"), saved, loaded, request, 3)
        return new.model, outcome.timings, {**outcome.diagnostics, "array": np.arange(2)}

    def score(model):
        calls["score"] += 1
        return column_scores(model, store, loaded.split, part)

    first = cache.column(MethodCall("bad_model", {}, saved, request, 3), store, run, score)
    assert first[3] is False and calls == {"run": 1, "score": 1}
    second = cache.column(MethodCall("bad_model", {}, saved, request, 3), store, run, score)
    assert second[3] is True and calls == {"run": 1, "score": 1}
    assert second[0] == first[0] and second[1] == first[1] and second[2]["array"] == [0, 1]
    # scores of another metric version are missing: the model is made and scored again
    monkeypatch.setattr(result_cache, "EVALUATION_VERSION", result_cache.EVALUATION_VERSION + 1)
    third = cache.column(MethodCall("bad_model", {}, saved, request, 3), store, run, score)
    assert third[3] is False and calls == {"run": 2, "score": 2} and third[0] == first[0]
    # another seed is another column
    assert cache.column(MethodCall("bad_model", {}, saved, request, 4), store, run, score)[3] is False
