"""PPP as a method: sample sets, the retain_set variant, diagnostics and the zero-Fisher path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from crossforget.data.forget import ForgetRequest
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.task import hashing_task
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method


@pytest.fixture(scope="module")
def task_and_model(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    return hashing_task(saved, loaded, ForgetRequest(["dog"])), saved.model


def _sampled_sets(task, model, **options):
    """Run PPP with fisher_over recorded, returning the index sets each Fisher saw."""
    import crossforget.unlearning.methods.ppp_method as module

    seen = {}
    original = module.fisher_over

    def spy(model, task_, indices, estimator, batch_size, what):
        seen[what] = np.asarray(indices)
        return original(model, task_, indices, estimator, batch_size, what)

    module.fisher_over = spy
    try:
        result = create_method("ppp", **options).unlearn(model, task, seed=0)
    finally:
        module.fisher_over = original
    return seen, result


def test_paper_subsets_are_disjoint_and_follow_the_neighbour_labels(task_and_model):
    task, model = task_and_model
    seen, result = _sampled_sets(task, model, retain_set="rest", neighbour_samples=None, retain_samples=None)
    labels = task.labels.numpy().astype(bool)
    names = task.class_names
    neighbours = [names.index(n) for n in result.diagnostics["neighbours"]]
    dog = names.index("dog")
    assert labels[seen["D_f"], dog].all()
    assert labels[seen["D_n"]][:, neighbours].any(axis=1).all() and not labels[seen["D_n"], dog].any()
    assert not labels[seen["retained"]][:, neighbours].any() and not labels[seen["retained"], dog].any()
    assert not set(seen["D_f"]) & set(seen["D_n"]) and not set(seen["D_n"]) & set(seen["retained"])
    regions = result.diagnostics["regions"]
    assert sum(regions.values()) == sum(p.numel() for p in model.parameters())
    assert result.diagnostics["gamma"] > 0


def test_retain_set_all_includes_neighbour_samples(task_and_model):
    task, model = task_and_model
    seen, _ = _sampled_sets(task, model, retain_set="all", retain_samples=None)
    assert sorted(seen["retained"]) == sorted(task.train_retain)
    with pytest.raises(Exception, match="retain_set"):
        _sampled_sets(task, model, retain_set="neighbours")


def test_zero_forget_fisher_warns_and_returns_the_model_unchanged(task_and_model):
    task, model = task_and_model

    def flat_loss(m, batch, reduction="mean"):
        value = task.loss(m, batch, reduction)
        return value * 0.0

    silent = dataclasses.replace(task, loss=flat_loss)
    with pytest.warns(RuntimeWarning, match="Fisher is zero"):
        result = create_method("ppp").unlearn(model, silent, seed=0)
    for a, b in zip(model.state_dict().values(), result.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _two_class_task(task_and_model):
    task, model = task_and_model
    names = task.class_names
    labels = task.labels.numpy().astype(bool)
    counts = labels.sum(axis=0)
    dog = names.index("dog")
    other = next(int(c) for c in np.argsort(-counts) if c != dog and names[c] != "person")
    forget = np.flatnonzero(labels[:, [dog, other]].any(axis=1))
    retain = np.setdiff1d(np.arange(labels.shape[0]), forget)
    return dataclasses.replace(
        task, train_forget=forget, train_retain=retain, forget_classes=[dog, other], probe=None
    ), model


def test_per_class_forget_fisher_is_the_maximum_over_each_class_fisher(task_and_model):
    """A two-class request: one Fisher per class over the paired forget sample's members, max-combined."""
    import crossforget.unlearning.methods.ppp_method as module

    task, model = _two_class_task(task_and_model)
    options = dict(retain_budget=None, forget_samples=40)
    seen: dict[str, np.ndarray] = {}
    fishers: dict[str, dict[str, torch.Tensor]] = {}
    original = module.fisher_over

    def spy(model_, task_, indices, estimator, batch_size, what):
        seen[what] = np.asarray(indices)
        fishers[what] = original(model_, task_, indices, estimator, batch_size, what)
        return fishers[what]

    module.fisher_over = spy
    try:
        method = create_method("ppp", **options)
        clone, plans, diagnostics = method.plan(model, task, 0, module.StageTimer())
    finally:
        module.fisher_over = original
    first, second = (task.class_names[c] for c in task.forget_classes)
    sample = module.forget_sample(task, 40, 0)
    labels = task.labels.numpy().astype(bool)
    assert sorted(seen) == sorted([f"D_f ({first})", f"D_f ({second})", "D_n", "retained"])
    for name, column in ((first, task.forget_classes[0]), (second, task.forget_classes[1])):
        assert np.array_equal(seen[f"D_f ({name})"], sample[labels[sample, column]])
        assert diagnostics["samples"]["forget_per_class"][name] == int(labels[sample, column].sum())
    pooled_plans = create_method("ppp", forget_fisher="pooled", **options).plan(
        model, task, 0, module.StageTimer()
    )[1]
    for key, plan in plans.items():
        expected = torch.maximum(fishers[f"D_f ({first})"][key], fishers[f"D_f ({second})"][key])
        fisher_r = fishers["retained"][key]
        critical = torch.where(expected > 0, expected / fisher_r, torch.zeros_like(expected))
        torch.testing.assert_close(plan.critical, critical.to(plan.critical.dtype))
    # The maximum never selects less than the pooled mean, and here strictly more at the default alpha.
    per_class_selected = sum(int((p.critical > 30).sum()) for p in plans.values())
    pooled_selected = sum(int((p.critical > 30).sum()) for p in pooled_plans.values())
    assert per_class_selected > pooled_selected


def test_single_class_forget_fisher_is_the_same_either_way(task_and_model):
    task, model = task_and_model
    a = create_method("ppp", retain_budget=None).unlearn(model, task, seed=0)
    b = create_method("ppp", retain_budget=None, forget_fisher="pooled").unlearn(model, task, seed=0)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(Exception, match="forget_fisher"):
        create_method("ppp", forget_fisher="mean").unlearn(model, task, seed=0)
