"""The runner: run order, the three result trees, and a new experiment as a config plus a runner call.

``forget_one`` below is the worked example of docs/contributing.md ("Adding an experiment"): it must
give exactly the numbers ``sweep`` gives for the same columns, since both go through ``run_columns``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from crossforget.data.forget import ForgetRequest, partition
from crossforget.engine.results import Column, SeedResults, deltas, summarise
from crossforget.engine.runner import plan, run_columns
from crossforget.experiments.sweeps import SweepConfig, SweepPoint, run_sweep
from crossforget.tasks.hashing.columns import OriginalCheckpoints, column_scores, open_checkpoints, run_column
from crossforget.tasks.hashing.task import store_for

FAST = {"ppp": {"neighbour_samples": 40, "retain_samples": 80}}


def test_runner_plans_references_once_and_fills_every_tree_in_order():
    runs = plan(["original", "ppp"], [3, 4], {"original"}, 0)
    assert runs == [("original", 0), ("ppp", 3), ("ppp", 4)]
    results, seen = SeedResults(), []

    def column(method: str, seed: int) -> Column:
        return Column({"score": seed}, {"train": 1.0}, {"method": method})

    run_columns(
        results, runs, column, lambda m, s: (m, "16", str(s)), lambda *a: seen.append(a[:2]), wall="wall"
    )
    assert seen == runs
    assert list(results.per_seed) == ["original", "ppp"] and results.per_seed["ppp"]["16"]["4"] == {
        "score": 4
    }
    assert set(results.timings["ppp"]["16"]["3"]) == {"train", "wall"}
    assert results.as_dict()["diagnostics"]["original"]["16"]["0"] == {"method": "original"}


@dataclass
class ForgetOneConfig:
    """The experiment's configuration: what to forget, which columns, which seeds, method options."""

    forget: tuple[str, ...] = ("dog",)
    methods: tuple[str, ...] = ("original", "retrain", "ppp")
    seeds: tuple[int, ...] = (0, 1)
    method_options: dict[str, dict] = field(default_factory=lambda: dict(FAST))


def forget_one(checkpoints: OriginalCheckpoints, config: ForgetOneConfig) -> dict:
    """Every column at every bit length (method / bits / seed), then the summaries and |Δ|."""
    loaded = checkpoints.loaded
    request = ForgetRequest(config.forget)
    part = partition(loaded.data, loaded.split, request)
    runs = SeedResults()
    for saved, reference in zip(checkpoints.saved, checkpoints.references, strict=True):
        store = store_for(saved, loaded)

        def column(method: str, seed: int, saved=saved, reference=reference, store=store) -> Column:
            options = config.method_options.get(method, {})
            model, timings, diagnostics = run_column(method, seed, saved, loaded, request, reference, options)
            return Column(column_scores(model, store, loaded.split, part), timings, diagnostics)

        runs_plan = plan(config.methods, config.seeds, {"original", "retrain"}, reference.seed)
        run_columns(
            runs, runs_plan, column, lambda method, seed, bits=saved.bits: (method, str(bits), str(seed))
        )
    results = runs.as_dict()
    results["summary"] = summarise(results["per_seed"])
    results["delta"] = deltas(results["summary"])
    return results


def test_a_new_experiment_is_a_config_and_a_runner_call(tiny_checkpoint: Path, tmp_path: Path):
    checkpoints = open_checkpoints(tiny_checkpoint, None, tmp_path / "cache")
    results = forget_one(checkpoints, ForgetOneConfig())
    assert list(results["per_seed"]) == ["original", "retrain", "ppp"]
    assert list(results["per_seed"]["ppp"]["16"]) == ["0", "1"] and list(
        results["per_seed"]["retrain"]["16"]
    ) == ["0"]
    assert set(results["delta"]["ppp"]) == {"forget", "retain"}
    # The same columns through `sweep`: the same numbers, seed by seed.
    sweep = run_sweep(
        "requests",
        [SweepPoint("dog", ("dog",))],
        checkpoints,
        SweepConfig(methods=("ppp",), seeds=(0, 1), method_options=dict(FAST)),
        Console(quiet=True),
    )
    for method in ("original", "retrain", "ppp"):
        assert sweep["per_seed"]["dog"][method] == results["per_seed"][method]
