"""The tuner: a toy optimum, resuming an interrupted study, pruning, storage errors, the validation split
and the unlearning objective recomputed independently on the tiny checkpoint."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from rich.console import Console

from crossforget.cli import main
from crossforget.cli.common import read_params
from crossforget.core.errors import CrossforgetError
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.splits import make_split
from crossforget.data.validation import validation_split
from crossforget.engine.training import TrainingRecipe
from crossforget.experiments.tuning import Dimension, open_storage, run_study, search_space
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.evaluation import evaluate_model
from crossforget.tasks.hashing.reference import trained_reference
from crossforget.tasks.hashing.task import run_method, store_for
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method, method_options

QUIET = Console(quiet=True)
TOY = {
    "x": Dimension("float", -5.0, 5.0),
    "scale": Dimension("log", 0.01, 100.0),
    "k": Dimension("int", 1, 8),
}


def toy(params: dict, record) -> Iterator[float]:
    """Minimum 0 at x = 1.3, scale = 1 (log-distance), k = 3."""
    yield (params["x"] - 1.3) ** 2 + np.log10(params["scale"]) ** 2 + (params["k"] - 3) ** 2


def _study(tmp_path: Path, steps, trials: int, name: str = "toy", setup: dict | None = None, **kw):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return run_study(
        steps,
        1,
        TOY,
        {},
        storage=storage,
        study_name=name,
        trials=trials,
        setup=setup or {"toy": 1},
        console=QUIET,
        **kw,
    )


def test_tuner_finds_the_optimum_of_a_toy_objective(tmp_path: Path):
    study = _study(tmp_path, toy, trials=60)
    best = study.best_trial
    assert best.params["k"] == 3
    assert abs(best.params["x"] - 1.3) < 0.5
    assert 0.3 < best.params["scale"] < 3.0
    assert best.value < 0.4


def test_an_interrupted_study_resumes(tmp_path: Path):
    calls = {"n": 0}

    def flaky(params: dict, record) -> Iterator[float]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        yield from toy(params, record)

    with pytest.raises(KeyboardInterrupt):
        _study(tmp_path, flaky, trials=8)
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    before = optuna.load_study(study_name="toy", storage=storage).get_trials()
    assert [t.state.name for t in before] == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    study = _study(tmp_path, toy, trials=8)
    after = study.get_trials()
    finished = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 8
    assert [t.params for t in after[:3]] == [t.params for t in before[:3]]  # kept, not redone
    assert all(t.params != before[0].params for t in after[4:])  # the sampler does not start over
    again = _study(tmp_path, toy, trials=8)  # nothing left to do
    assert len(again.get_trials()) == len(after)


def test_hopeless_trials_are_pruned_before_their_last_step(tmp_path: Path):
    last_steps = []

    def staged(params: dict, record) -> Iterator[float]:
        for step in range(3):
            if step == 2:
                last_steps.append(params["x"])
            yield params["x"] + 5.0 + step  # worse x is worse at every step

    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = run_study(
        staged,
        3,
        {"x": Dimension("float", -5.0, 5.0)},
        {},
        storage=storage,
        study_name="p",
        trials=25,
        setup={},
        console=QUIET,
    )
    pruned = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned
    assert all(t.params["x"] not in last_steps for t in pruned)
    assert all(max(t.intermediate_values) < 2 for t in pruned)


def test_a_study_with_another_setup_is_refused(tmp_path: Path):
    _study(tmp_path, toy, trials=1, setup={"method": "ppp"})
    with pytest.raises(CrossforgetError, match="another setup"):
        _study(tmp_path, toy, trials=2, setup={"method": "ssd"})


@pytest.mark.parametrize("url", ["nosuch://x", "sqlite:////proc/no/such/folder/x.db", "not a url"])
def test_storage_that_cannot_be_opened_is_one_line(url: str):
    with pytest.raises(CrossforgetError, match="cannot open --storage") as info:
        open_storage(url)
    assert "\n" not in str(info.value)


def test_bad_storage_fails_before_any_work(tiny_checkpoint: Path, tmp_path: Path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    code = main(
        [
            "tune",
            "--method",
            "ppp",
            "--checkpoint",
            str(tiny_checkpoint),
            "--storage",
            "nosuch://db",
            "--cache",
            str(cache),
            "--out",
            str(out),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot open --storage nosuch://db") and "\n" not in err
    assert not cache.exists() and not out.exists()


def test_search_space_overrides():
    space = search_space("ppp", fixed={"k": 3}, ranges={"alpha": (5.0, 50.0)})
    assert "k" not in space and space["alpha"] == Dimension("log", 5.0, 50.0)
    assert space["lam_max"].kind == "float" and space["lam_max"].high == 1.0
    assert set(search_space("ssd")) == {"alpha", "lam"}
    with pytest.raises(CrossforgetError, match="tuned options"):
        search_space("ssd", fixed={"tau": 1.0})
    with pytest.raises(CrossforgetError, match="positive lower end"):
        search_space("ppp", ranges={"tau": (0.0, 1.0)})


def test_validation_split_is_held_out_and_seeded():
    split = make_split(100, 20, 50, seed=3)
    val = validation_split(split, size=10, seed=1)
    assert val.query.size == 10
    assert not set(val.query) & set(split.query) and not set(val.query) & set(split.train)
    assert set(val.query) <= set(split.database) and not set(val.query) & set(val.database)
    assert set(val.database) | set(val.query) == set(split.database)
    assert np.array_equal(val.train, split.train)
    assert np.array_equal(validation_split(split, 10, 1).query, val.query)
    assert not np.array_equal(validation_split(split, 10, 2).query, val.query)
    assert validation_split(split, 1000).query.size == 30  # all held-out items
    with pytest.raises(CrossforgetError, match="lower --num-train"):
        validation_split(make_split(70, 20, 50, seed=0))


def test_tune_command_and_its_objective_recomputed(tiny_checkpoint: Path, tmp_path: Path):
    out, cache = tmp_path / "tune", tmp_path / "cache"
    args = [
        "tune",
        "--method",
        "ppp",
        "--checkpoint",
        str(tiny_checkpoint),
        "--trials",
        "3",
        "--validation-size",
        "80",
        "--storage",
        f"sqlite:///{tmp_path / 'o.db'}",
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--option",
        "neighbour_samples=40",
        "--fix",
        "lam_max=0.5",
    ]
    assert main(args) == 0
    payload = json.loads((out / "best.json").read_text())
    assert payload["trials"] == 3 and payload["storage"].startswith("sqlite:///")
    params = read_params(out / "best.json", "ppp")
    assert params["lam_max"] == 0.5 and params["neighbour_samples"] == 40
    assert sorted(payload["tuned"]) == ["alpha", "k", "lam", "tau"]
    assert set(params) == {f.name for f in dataclasses.fields(method_options("ppp"))}  # defaults recorded
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 4
    assert (out / "history.png").stat().st_size > 10_000

    # The objective by hand: |D_f(PPP) - D_f(Retrain)| + |D_r(PPP) - D_r(Original)|, mean of I2T and T2I.
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    val = validation_split(loaded.split, 80, 0)
    request = ForgetRequest(["dog"])
    part = partition(loaded.data, val, request)
    store = store_for(saved, loaded)
    recipe = TrainingRecipe.from_dict(saved.config["training"]["recipe"])
    retrain, was_cached = trained_reference(cache, loaded, 16, recipe, 0, ["dog"], {})
    assert was_cached  # the tuner trained it once and cached it
    new, _ = run_method(create_method("ppp", **params), saved, loaded, request, 0)

    def scores(model):
        return {r["direction"]: r for r in evaluate_model(model, store, val, part)}

    ours, original, truth = scores(new.model), scores(saved.model), scores(retrain.model)
    expected = np.mean(
        [
            100 * abs(ours[d]["forget_label"] - truth[d]["forget_label"])
            + 100 * abs(ours[d]["retain"] - original[d]["retain"])
            for d in ("I2T", "T2I")
        ]
    )
    assert payload["objective"] == pytest.approx(expected, abs=1e-9)

    assert main(args) == 0  # the same command again resumes: nothing left to do, results refreshed
    assert main([*args, "--trials", "4"]) == 0  # resumes the same study, one more trial
    assert json.loads((out / "best.json").read_text())["trials"] == 4


def test_infeasible_trials_are_pruned_with_their_message_and_avoided(tmp_path: Path):
    def picky(params: dict, record) -> Iterator[float]:
        if params["k"] > 4:
            raise CrossforgetError(f"k={params['k']} neighbours requested; lower k")
        yield from toy(params, record)

    study = _study(tmp_path, picky, trials=30)
    trials = study.get_trials()
    infeasible = [t for t in trials if "error" in t.user_attrs]
    assert infeasible and all(t.state == optuna.trial.TrialState.PRUNED for t in infeasible)
    assert all("lower k" in t.user_attrs["error"] and t.params["k"] > 4 for t in infeasible)
    assert len(trials) == 30 and study.best_trial.params["k"] <= 4
    # TPE learns the region: fewer infeasible draws after its random start-up trials
    assert (
        sum(t.params["k"] > 4 for t in trials[:10]) >= 4 and sum(t.params["k"] > 4 for t in trials[10:]) <= 2
    )
