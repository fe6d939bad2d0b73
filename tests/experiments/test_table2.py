"""Table 2: the paired PPP - SSD difference by hand, and ``crossforget demo`` end to end on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossforget.cli import main
from crossforget.experiments import table2
from crossforget.tasks.hashing import columns
from crossforget.tasks.hashing import task as hashing_task
from crossforget.tasks.hashing import training as training_run
from tests.conftest import TINY_DATA
from tests.experiments.test_sweeps import assert_picture

DIRECTIONS = ("I2T", "T2I")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole demo at 16 bits, one training epoch, two seeds, small samples (about 25 s on a CPU)."""
    root = tmp_path_factory.mktemp("demo")
    params = root / "sampled.json"
    params.write_text(json.dumps({"forget_samples": 8}))
    ppp = root / "ppp.json"
    ppp.write_text(json.dumps({"forget_samples": 8, "neighbour_samples": 40, "retain_samples": 60}))
    assert main([*_demo_argv(root), "--cache", str(root / "cache"), "--out", str(root / "out")]) == 0
    return root / "out"


def _demo_argv(root: Path) -> list[str]:
    argv = ["demo", *TINY_DATA, "--bits", "16", "--seeds", "0", "1", "--epochs", "1"]
    return argv + ["--ssd-params", str(root / "sampled.json"), "--ppp-params", str(root / "ppp.json")]


def test_a_second_demo_reads_the_cache_and_prints_the_same_numbers(demo_run: Path, monkeypatch, capsys):
    root = demo_run.parent

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained or evaluated again although nothing changed")

    monkeypatch.setattr(training_run, "train_model", refuse)  # Original, Retrain
    monkeypatch.setattr(hashing_task, "train_model", refuse)  # Finetune
    monkeypatch.setattr(table2, "column_scores", refuse)  # every column's evaluation
    monkeypatch.setattr(columns, "run_method", refuse)  # Bad model, SSD, PPP
    capsys.readouterr()
    assert main([*_demo_argv(root), "--cache", str(root / "cache"), "--out", str(root / "again")]) == 0
    first = json.loads((demo_run / "results.json").read_text())
    second = json.loads((root / "again" / "results.json").read_text())
    assert second["per_seed"] == first["per_seed"] and second["summary"] == first["summary"]
    for method in ("bad_model", "finetune", "ssd", "ppp"):
        assert first["diagnostics"][method]["16"]["0"]["cached"] is False
        assert second["diagnostics"][method]["16"]["0"]["cached"] is True
        assert second["timings"][method] == first["timings"][method]
    printed = capsys.readouterr().err
    assert "Finetune seed 0:" in printed and "column cached" in printed and "scores cached" in printed


def test_demo_writes_every_number_and_its_summaries(demo_run: Path):
    results = json.loads((demo_run / "results.json").read_text())
    methods = ["original", "bad_model", "retrain", "finetune", "ssd", "ppp"]
    assert list(results["per_seed"]) == methods
    assert results["forget"] == ["dog"] and results["config"]["seeds"] == [0, 1]
    for method in methods:
        seeds = ["0", "1"] if method in ("ssd", "ppp") else ["0"]
        assert list(results["per_seed"][method]["16"]) == seeds
        for seed in seeds:
            for direction in DIRECTIONS:
                assert 0.0 < results["per_seed"][method]["16"][seed][direction]["retain"] <= 1.0
        for direction in DIRECTIONS:
            values = [100 * results["per_seed"][method]["16"][s][direction]["retain"] for s in seeds]
            assert results["summary"][method][f"16-{direction}"]["retain"]["mean"] == pytest.approx(
                np.mean(values)
            )
    # Retrain trained without dog; SSD and PPP saw the same 8 forget samples at each seed.
    assert results["diagnostics"]["retrain"]["16"]["0"]["cached"] is False
    train_retain = results["partition"]["train_retain"]
    assert results["diagnostics"]["finetune"]["16"]["0"]["train_samples"] == train_retain
    for seed in ("0", "1"):
        assert results["diagnostics"]["ssd"]["16"][seed]["forget_samples"] == 8
        assert results["diagnostics"]["ppp"]["16"][seed]["samples"]["forget"] == 8
    # |Delta| against the references, recomputed from the summary
    summary = results["summary"]
    for method in ("bad_model", "finetune", "ssd", "ppp"):
        forget = np.mean(
            [
                abs(
                    summary[method][k]["forget_label"]["mean"] - summary["retrain"][k]["forget_label"]["mean"]
                )
                for k in ("16-I2T", "16-T2I")
            ]
        )
        assert results["delta"][method]["forget"] == pytest.approx(forget)
    # the paired difference, recomputed seed by seed from per_seed
    paired = results["paired"]["ppp-ssd"]
    assert paired["seeds"] == [0, 1]
    for direction in DIRECTIONS:
        diffs = [
            100
            * (
                results["per_seed"]["ppp"]["16"][s][direction]["forget_label"]
                - results["per_seed"]["ssd"]["16"][s][direction]["forget_label"]
            )
            for s in ("0", "1")
        ]
        entry = paired["settings"][f"16-{direction}"]["forget_label"]
        assert entry["mean"] == pytest.approx(np.mean(diffs)) and entry["n"] == 2
    assert set(paired["delta"]) == {"forget", "retain"}


def test_demo_tables_and_figure(demo_run: Path):
    table = (demo_run / "results.md").read_text()
    assert "| 16-I2T |" in table and "| 16-T2I |" in table and "|\\|Δ\\||" in table.replace(" ", "")
    assert "SSD D_f" in table and "PPP D_r" in table
    assert (demo_run / "results.csv").read_text().startswith("Bits,")
    assert "any-label" in (demo_run / "results_any_label.md").read_text()
    assert_picture(demo_run / "results.png")
