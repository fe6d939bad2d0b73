"""SSD as a method: its full-data Fisher I_D covers all of D = D_f + D_r, and a stored I_D is used
exactly when it is the one the run would compute (same estimator, batch size and samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import crossforget.unlearning.methods.ssd_method as ssd_module
from crossforget.data.forget import ForgetRequest
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.task import attach_full_fisher, hashing_task
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method

FAST = {"forget_samples": 8}


@pytest.fixture(scope="module")
def setup(tiny_checkpoint: Path):
    """The tiny checkpoint with a full-data Fisher attached (in memory), its data and task."""
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    attach_full_fisher(saved, loaded)
    return saved, loaded, hashing_task(saved, loaded, ForgetRequest(["dog"]))


def _run(monkeypatch, task, model, **options):
    seen: dict = {}
    original = ssd_module.fisher_over

    def spy(model_, task_, indices, estimator, batch_size, what):
        seen[what] = np.asarray(indices).copy()
        return original(model_, task_, indices, estimator, batch_size, what)

    monkeypatch.setattr(ssd_module, "fisher_over", spy)
    result = create_method("ssd", **{**FAST, **options}).unlearn(model, task, seed=0)
    monkeypatch.setattr(ssd_module, "fisher_over", original)
    return seen, result


def test_computed_full_fisher_covers_the_forget_and_the_retain_set(monkeypatch, setup):
    saved, loaded, task = setup
    seen, result = _run(monkeypatch, task, saved.model, use_stored_fisher=False)
    assert sorted(seen["D"]) == sorted(loaded.split.train)
    assert set(task.train_forget) <= set(seen["D"]) and set(task.train_retain) <= set(seen["D"])
    assert result.diagnostics["full_fisher"] == "computed"
    assert result.diagnostics["full_fisher_reason"] == "use_stored_fisher is false"


def test_stored_and_computed_paths_give_identical_weights(monkeypatch, setup):
    saved, _, task = setup
    assert task.stored_fisher_info == {"estimator": "batch", "batch_size": 32, "samples": 250}
    seen, stored = _run(monkeypatch, task, saved.model)
    assert "D" not in seen and stored.diagnostics["full_fisher"] == "stored"
    _, computed = _run(monkeypatch, task, saved.model, use_stored_fisher=False)
    assert stored.diagnostics["selected"] == computed.diagnostics["selected"] > 0
    for (name, a), b in zip(
        stored.model.state_dict().items(), computed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"estimator": "per_sample"}, "the stored one is batch@32, the request per_sample@32"),
        ({"batch_size": 8}, "the stored one is batch@32, the request batch@8"),
    ],
)
def test_a_stored_fisher_of_another_estimator_or_batch_size_is_not_used(monkeypatch, setup, options, reason):
    saved, _, task = setup
    seen, mismatched = _run(monkeypatch, task, saved.model, **options)
    assert sorted(seen["D"]) == sorted(task.train_all)
    assert mismatched.diagnostics["full_fisher"] == "computed"
    assert mismatched.diagnostics["full_fisher_reason"] == reason
    _, reference = _run(monkeypatch, task, saved.model, use_stored_fisher=False, **options)
    for a, b in zip(
        mismatched.model.state_dict().values(), reference.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_record_less_stored_fisher_counts_as_batch_at_32(monkeypatch, setup):
    saved, loaded, _ = setup
    old = dict(saved.config)
    old.pop("stored_fisher")
    saved_config = saved.config
    saved.config = old
    try:
        task = hashing_task(saved, loaded, ForgetRequest(["dog"]))
    finally:
        saved.config = saved_config
    assert task.stored_fisher_info == {"estimator": "batch", "batch_size": 32}
    _, result = _run(monkeypatch, task, saved.model)
    assert result.diagnostics["full_fisher"] == "stored"
    _, other = _run(monkeypatch, task, saved.model, batch_size=16)
    assert other.diagnostics["full_fisher_reason"] == "the stored one is batch@32, the request batch@16"
