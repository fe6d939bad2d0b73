"""Paired seeds: every sampled method draws the same forget sample at a seed; PPP's other samples
come from streams of their own; PPP's sample-count diagnostics count the pool actually sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import crossforget.unlearning.methods.ppp_method as ppp_module
import crossforget.unlearning.methods.ssd_method as ssd_module
from crossforget.data.forget import ForgetRequest
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.task import hashing_task
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method
from crossforget.unlearning.methods.base import forget_sample

FORGET = 6  # well below the tiny data's D_f, so different seeds draw different samples
FAST_PPP = {"neighbour_samples": 30, "retain_samples": 40}


@pytest.fixture(scope="module")
def task_and_model(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    task = hashing_task(saved, loaded, ForgetRequest(["dog"]))
    assert task.train_forget.size > 2 * FORGET
    return task, saved.model


def _seen(monkeypatch, module, name: str, task, model, seed: int, **options) -> tuple[dict, dict]:
    """The index set behind every Fisher pass of one run, and the run's diagnostics."""
    seen: dict = {}
    original = module.fisher_over

    def spy(model_, task_, indices, estimator, batch_size, what):
        seen[what] = np.asarray(indices).copy()
        return original(model_, task_, indices, estimator, batch_size, what)

    monkeypatch.setattr(module, "fisher_over", spy)
    result = create_method(name, **options).unlearn(model, task, seed=seed)
    monkeypatch.setattr(module, "fisher_over", original)
    return seen, result.diagnostics


def test_ssd_and_ppp_draw_the_same_forget_sample_at_each_seed(monkeypatch, task_and_model):
    task, model = task_and_model
    samples = []
    for seed in (0, 1):
        ssd, _ = _seen(monkeypatch, ssd_module, "ssd", task, model, seed, forget_samples=FORGET)
        ppp, _ = _seen(monkeypatch, ppp_module, "ppp", task, model, seed, forget_samples=FORGET, **FAST_PPP)
        assert ssd["D_f"].size == FORGET
        np.testing.assert_array_equal(ssd["D_f"], ppp["D_f"])
        np.testing.assert_array_equal(ssd["D_f"], forget_sample(task, FORGET, seed))
        samples.append(ssd["D_f"])
    assert not np.array_equal(samples[0], samples[1])  # the seed does choose the sample


def test_ppp_neighbour_and_retain_samples_do_not_move_with_the_forget_budget(monkeypatch, task_and_model):
    task, model = task_and_model
    small, _ = _seen(monkeypatch, ppp_module, "ppp", task, model, 0, forget_samples=FORGET, **FAST_PPP)
    large, _ = _seen(monkeypatch, ppp_module, "ppp", task, model, 0, forget_samples=2 * FORGET, **FAST_PPP)
    assert small["D_f"].size == FORGET and large["D_f"].size == 2 * FORGET
    np.testing.assert_array_equal(small["D_n"], large["D_n"])
    np.testing.assert_array_equal(small["retained"], large["retained"])
    other, _ = _seen(monkeypatch, ppp_module, "ppp", task, model, 1, forget_samples=FORGET, **FAST_PPP)
    assert not np.array_equal(small["retained"], other["retained"])


@pytest.mark.parametrize("retain_set", ["all", "rest"])
def test_available_retain_counts_the_pool_the_retained_sample_is_drawn_from(
    monkeypatch, task_and_model, retain_set: str
):
    task, model = task_and_model
    seen, diag = _seen(
        monkeypatch, ppp_module, "ppp", task, model, 0, retain_set=retain_set, retain_samples=None
    )
    # With no budget the retained sample is its whole pool, so the two counts must agree.
    assert diag["available"]["retain"] == seen["retained"].size == diag["samples"]["retain"]
    expected = (
        task.train_retain.size
        if retain_set == "all"
        else task.train_retain.size - diag["available"]["neighbour"]
    )
    assert diag["available"]["retain"] == expected
