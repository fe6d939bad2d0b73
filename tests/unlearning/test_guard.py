"""The two-sided forgetting guard: its search on known response curves, and PPP on a tiny model."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.data.forget import ForgetRequest
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.task import hashing_task
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.guard import GuardSettings, ProbeScores, RetentionProbe, guarded_search
from crossforget.unlearning.methods import create_method


class _Knob(nn.Module):
    """A 'model' whose only state is the alpha it was built with."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = math.inf


def _curves(drop_at, forget_at):
    """A probe whose retained drop (points) and forget score depend on the model's alpha only."""
    knob = _Knob()

    def build(alpha: float):
        knob.alpha = alpha
        return knob, int(1000 / alpha)

    def score(model: _Knob) -> ProbeScores:
        if model.alpha == math.inf:  # the original
            return ProbeScores(retain=0.8, forget=0.5)
        return ProbeScores(retain=0.8 - drop_at(model.alpha) / 100, forget=forget_at(model.alpha))

    return build, RetentionProbe(score, forget_floor=0.1, description="curves"), knob


def _search(drop_at, forget_at, alpha0=30.0, **settings):
    build, probe, knob = _curves(drop_at, forget_at)
    return guarded_search(build, probe, knob, alpha0, (1.0, 1e6), GuardSettings(**settings))


def test_a_start_that_keeps_and_forgets_is_accepted_in_one_step():
    outcome = _search(lambda a: 0.2, lambda a: 0.11)
    assert (outcome.alpha, outcome.acted_on, outcome.met, len(outcome.steps)) == (30.0, "none", True, 1)
    assert outcome.forget_target == pytest.approx(0.1 + 0.1 * 0.4)


def test_damage_raises_alpha_until_the_budget_holds_and_forgetting_remains():
    # Damage falls with alpha (gone above 200); forgetting holds up to alpha 1000.
    outcome = _search(lambda a: 5.0 if a < 200 else 0.5, lambda a: 0.12 if a < 1000 else 0.5)
    assert outcome.acted_on == "retain" and outcome.met
    assert 200 <= outcome.alpha < 1000
    assert all(s.alpha >= 30.0 for s in outcome.steps)


def test_too_little_forgetting_lowers_alpha():
    outcome = _search(lambda a: 0.0 if a > 3 else 9.0, lambda a: 0.12 if a <= 8 else 0.45)
    assert outcome.acted_on == "forget" and outcome.met
    assert 3 < outcome.alpha <= 8


def test_no_setting_meets_both_warns_keeps_retention_and_stops_within_the_step_bound():
    with pytest.warns(RuntimeWarning, match="forgetting INCOMPLETE"):
        outcome = _search(lambda a: 0.0 if a > 10 else 9.0, lambda a: 0.12 if a <= 5 else 0.45, max_steps=6)
    assert not outcome.met and len(outcome.steps) <= 6
    assert outcome.steps[-1].alpha > 0 and outcome.alpha > 10


def test_nothing_within_budget_returns_the_least_damaging_candidate():
    with pytest.warns(RuntimeWarning, match="least damaging"):
        outcome = _search(lambda a: 10.0 - math.log10(a), lambda a: 0.11, max_steps=4)
    assert not outcome.met
    assert outcome.alpha == max(s.alpha for s in outcome.steps)


def _two_classes(class_steps: int = 8):
    """Class 0 is forgotten below alpha 200 but damages below 50; class 1 is forgotten only below 8.

    No common alpha keeps and forgets both; class 0 at >= 50 with class 1 at <= 8 does.
    """
    knob = _Knob()
    knob.alphas = (math.inf, math.inf)

    def build(alpha):
        knob.alphas = alpha if isinstance(alpha, tuple) else (alpha, alpha)
        return knob, int(sum(1000 / a for a in knob.alphas))

    def score(model: _Knob) -> ProbeScores:
        a0, a1 = model.alphas
        per_class = (0.05 if a0 < 200 else 0.5, 0.05 if a1 <= 8 else 0.5)
        drop = 5.0 if a0 < 50 else 0.0
        return ProbeScores(0.8 - drop / 100, sum(per_class) / 2, per_class)

    probe = RetentionProbe(score, 0.0, "two classes", class_floors=(0.0, 0.0))
    knob.alphas = (math.inf, math.inf)
    settings = GuardSettings(class_steps=class_steps)
    return build, probe, knob, settings


def test_per_class_refinement_forgets_what_no_common_alpha_can():
    build, probe, knob, settings = _two_classes()
    outcome = guarded_search(build, probe, knob, 30.0, (1.0, 1e6), settings, build)
    assert outcome.met and outcome.acted_on == "both"
    assert outcome.alphas[0] >= 50 and outcome.alphas[1] <= 8
    assert len(outcome.steps) <= settings.max_steps + settings.class_steps
    assert outcome.class_targets == pytest.approx((0.05, 0.05))
    refined = [s for s in outcome.steps if s.alphas is not None]
    assert refined and all(s.alphas[0] == refined[0].alphas[0] for s in refined)  # class 1 moved alone
    record = outcome.diagnostics(settings, probe)
    assert record["alphas"] == list(outcome.alphas) and "alphas" in record["steps"][-1]
    assert "alphas" not in record["steps"][0] and tuple(record["steps"][0]["forget_per_class"]) == (0.05, 0.5)


@pytest.mark.parametrize("disable", ["class_steps", "no_builder", "no_class_scores"])
def test_without_the_refinement_the_same_request_is_reported_incomplete(disable):
    build, probe, knob, settings = _two_classes(class_steps=0 if disable == "class_steps" else 8)
    if disable == "no_class_scores":
        probe = dataclasses.replace(probe, class_floors=())
    per_class = None if disable == "no_builder" else build
    with pytest.warns(RuntimeWarning, match="forgetting INCOMPLETE"):
        outcome = guarded_search(build, probe, knob, 30.0, (1.0, 1e6), settings, per_class)
    assert not outcome.met and outcome.alphas is None
    assert all(s.alphas is None for s in outcome.steps)


def test_a_negative_refinement_step_count_is_a_clear_error():
    with pytest.raises(CrossforgetError, match="0 = off"):
        GuardSettings(class_steps=-1)


@pytest.mark.parametrize("budget", [-1.0, float("nan"), float("inf"), "1"])
def test_a_bad_budget_is_a_clear_error(budget):
    with pytest.raises(CrossforgetError, match="retain-budget"):
        GuardSettings(retain_budget=budget)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    return hashing_task(saved, loaded, ForgetRequest(["dog"])), saved.model


def _ppp(task, model, **options):
    return create_method(
        "ppp", forget_samples=40, neighbour_samples=80, retain_samples=160, **options
    ).unlearn(model, task, seed=0)


def test_ppp_backs_off_under_a_zero_budget_and_not_under_a_loose_one(tiny):
    task, model = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Start where the tiny model is surely damaged (alpha 1 dampens every entry with I_f > I_r), with a
    # floor every candidate reaches, so that only the retained side can make the guard act.
    task = dataclasses.replace(task, probe=dataclasses.replace(task.probe, forget_floor=1.0))
    strict = _ppp(task, model, alpha=1.0, retain_budget=0.0)
    loose = _ppp(task, model, alpha=1.0, retain_budget=100.0)
    guard_strict, guard_loose = strict.diagnostics["guard"], loose.diagnostics["guard"]
    assert (
        guard_loose["acted_on"] == "none" and len(guard_loose["steps"]) == 1 and guard_loose["alpha"] == 1.0
    )
    assert guard_strict["acted_on"] == "retain" and guard_strict["alpha"] > 1.0
    assert len(guard_strict["steps"]) > 1 and guard_strict["steps"][0]["retain_drop"] > 0
    dampened = strict.diagnostics["regions"]["B"] + strict.diagnostics["regions"]["C"]
    assert dampened < loose.diagnostics["regions"]["B"] + loose.diagnostics["regions"]["C"]
    for name, value in model.state_dict().items():  # the input model is never modified
        assert torch.equal(value, before[name])


def test_ppp_lowers_alpha_when_nothing_is_forgotten(tiny):
    task, model = tiny
    # A floor no model reaches: every candidate under-forgets, so the guard must walk alpha down.
    unreachable = dataclasses.replace(task.probe, forget_floor=-1.0)
    with pytest.warns(RuntimeWarning, match="forgetting INCOMPLETE"):
        result = _ppp(
            dataclasses.replace(task, probe=unreachable),
            model,
            alpha=1e4,
            forget_tolerance=0.0,
            guard_steps=3,
        )
    guard = result.diagnostics["guard"]
    assert guard["acted_on"] == "forget" and not guard["met"] and len(guard["steps"]) == 3
    alphas = [step["alpha"] for step in guard["steps"]]
    assert alphas == sorted(alphas, reverse=True) and alphas[-1] < 1e4


def test_guard_off_and_without_a_probe(tiny):
    task, model = tiny
    plain = _ppp(task, model, retain_budget=None)
    assert "guard" not in plain.diagnostics
    with pytest.warns(RuntimeWarning, match="guard skipped: no held-out item"):
        unprobed = _ppp(dataclasses.replace(task, probe=None), model)
    assert unprobed.diagnostics["guard"] == {"skipped": "the task offers no held-out probe"}


@pytest.mark.parametrize("method", ["ppp", "ssd"])
def test_tiny_or_entangled_forget_sets_are_warned_about_with_counts(tiny, method):
    task, model = tiny
    labels = task.labels.numpy().astype(bool)
    others = labels.copy()
    others[:, task.forget_classes] = False
    entangled = task.train_forget[others[task.train_forget].any(axis=1)]
    few = dataclasses.replace(task, train_forget=task.train_forget[:3])
    with pytest.warns(RuntimeWarning, match=r"only 3 training sample\(s\) carry dog"):
        create_method(method, forget_samples=3).unlearn(model, few, seed=0)
    shared = dataclasses.replace(task, train_forget=entangled[:6])
    with pytest.warns(RuntimeWarning, match="all 6 training samples carrying dog also carry retained"):
        create_method(method, forget_samples=6).unlearn(model, shared, seed=0)


@pytest.mark.parametrize(
    "options",
    [{"retain_budget": -1.0}, {"retain_budget": float("nan")}, {"forget_tolerance": 1.5}, {"guard_steps": 0},
     {"guard_class_steps": -1}, {"alpha": -1.0}],
)  # fmt: skip
def test_guard_options_out_of_range_are_refused_on_creation(options):
    with pytest.raises(CrossforgetError, match=next(iter(options))):
        create_method("ppp", **options)


def test_hashing_probe_floor_is_the_label_oracle_by_default_and_chance_on_request(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
):
    import crossforget.tasks.hashing.probe as module
    from crossforget.data.forget import partition
    from crossforget.metrics.oracle_floor import label_oracle_map
    from crossforget.tasks.hashing.task import store_for

    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    part = partition(loaded.data, loaded.split, ForgetRequest(["dog"]))
    store = store_for(saved, loaded)
    seen = []

    def spy(query_labels, db_labels, forget_classes, relevant=None):
        seen.append(
            (
                query_labels[:, forget_classes].all(),
                label_oracle_map(query_labels, db_labels, forget_classes, relevant),
            )
        )
        return seen[-1][1]

    monkeypatch.setattr(module, "label_oracle_map", spy)
    oracle = module.hashing_probe(store, loaded.split, part)
    chance = module.hashing_probe(store, loaded.split, part, floor="chance")
    assert len(seen) == 1 and seen[0][0]  # scored once, on the forget queries only
    assert oracle.forget_floor == seen[0][1] != chance.forget_floor
    assert "cooccurrence floor" in oracle.description and "chance floor" in chance.description
    with pytest.raises(CrossforgetError, match="floor"):
        module.hashing_probe(store, loaded.split, part, floor="zero")


def test_hashing_probe_scores_each_forget_class_of_a_multi_class_request(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
):
    import crossforget.tasks.hashing.probe as module
    from crossforget.data.forget import partition
    from crossforget.tasks.hashing.probe import hashing_probe
    from crossforget.tasks.hashing.task import store_for

    calls = []
    original_map = module.mean_average_precision

    def spy(query, database, query_labels, db_labels):
        calls.append((query.shape[0], np.asarray(query_labels), np.asarray(db_labels)))
        return original_map(query, database, query_labels, db_labels)

    monkeypatch.setattr(module, "mean_average_precision", spy)

    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    store = store_for(saved, loaded)
    request = ForgetRequest(["dog", "person"])
    part = partition(loaded.data, loaded.split, request)
    probe = hashing_probe(store, loaded.split, part)
    scores = probe.score(saved.model)
    assert len(scores.per_class) == 2 and len(probe.class_floors) == 2
    # One call per class and direction: that class's forget queries only, relevance on its label only.
    assert len(calls) == 4
    for rows, query_labels, db_labels in calls:
        assert query_labels.shape == (rows, 1) and query_labels.all() and db_labels.shape[1] == 1
    assert all(0.0 <= value <= 1.0 for value in (*scores.per_class, *probe.class_floors))
    single = hashing_probe(store, loaded.split, partition(loaded.data, loaded.split, ForgetRequest(["dog"])))
    assert single.score(saved.model).per_class == () and single.class_floors == ()


def test_ppp_refines_per_class_when_the_common_alpha_leaves_a_class_unforgotten(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    task = hashing_task(saved, load_data(saved.dataset_spec), ForgetRequest(["dog", "person"]))
    # Floors nobody reaches: the common search ends kept but not forgotten, so the refinement runs.
    probe = dataclasses.replace(task.probe, forget_floor=-1.0, class_floors=(-1.0, -1.0))
    options = dict(forget_tolerance=0.0, retain_budget=100.0, guard_steps=2, guard_class_steps=2)
    with pytest.warns(RuntimeWarning, match="forgetting INCOMPLETE"):
        result = _ppp(dataclasses.replace(task, probe=probe), saved.model, **options)
    guard = result.diagnostics["guard"]
    refined = [step for step in guard["steps"] if "alphas" in step]
    assert len(guard["steps"]) == 4 and len(refined) == 2
    assert all(len(step["alphas"]) == 2 and len(step["forget_per_class"]) == 2 for step in guard["steps"][2:])
    assert guard["class_targets"] == [-1.0, -1.0]
    without = _ppp(dataclasses.replace(task, probe=probe), saved.model, **{**options, "guard_class_steps": 0})
    assert all("alphas" not in step for step in without.diagnostics["guard"]["steps"])


def test_ppp_runs_a_further_round_from_a_kept_but_unforgotten_result(tiny):
    task, model = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # A floor nobody reaches and a loose budget: every round keeps and none forgets enough.
    unreachable = dataclasses.replace(task, probe=dataclasses.replace(task.probe, forget_floor=-1.0))
    options = dict(forget_tolerance=0.0, retain_budget=100.0, guard_steps=2)
    with pytest.warns(RuntimeWarning, match="forgetting INCOMPLETE"):
        two = _ppp(unreachable, model, rounds=2, **options)
    guard = two.diagnostics["guard"]
    assert len(guard["rounds"]) == 2 and guard["round"] in (1, 2)
    assert len(guard["earlier_rounds"]) == 1
    # The second round is measured against the input model's probe scores (a cumulative budget).
    assert guard["earlier_rounds"][0]["original"] == guard["original"]
    if guard["round"] == 2:  # kept only because it forgot more than the first
        assert guard["rounds"][1]["forget"] < guard["rounds"][0]["forget"]
    with pytest.warns(RuntimeWarning, match="forgetting INCOMPLETE"):
        one = _ppp(unreachable, model, rounds=1, **options)
    assert "rounds" not in one.diagnostics["guard"]
    # The first of two rounds is the single-round result.
    assert guard["rounds"][0]["alpha"] == one.diagnostics["guard"]["alpha"]
    assert guard["rounds"][0]["dampened"] in [step["dampened"] for step in one.diagnostics["guard"]["steps"]]
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
