"""Benchmark scripts run end to end on tiny settings and report numbers consistent with their own data."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

from crossforget.errors import CrossforgetError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """Import benchmarks/<name>.py (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_unlearn_speed_reports_ratios_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = load_script("unlearn_speed")
    out = tmp_path / "speed.json"
    argv = [
        "--cache",
        str(tmp_path / "cache"),
        "--data-option",
        "num_items=400",
        "--data-option",
        "image_size=32",
        "--num-query",
        "60",
        "--num-train",
        "250",
        "--epochs",
        "1",
        "--bits",
        "16",
        "--repeat",
        "2",
        "--fisher-samples",
        "64",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--json",
        str(out),
    ]
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())

    methods = results["methods"]
    assert set(methods) == {"retrain", "ppp", "ssd_computed", "ssd_stored"}
    assert len(methods["ppp"]["wall_seconds"]) == 2 and len(methods["retrain"]["wall_seconds"]) == 1
    for run in methods.values():
        assert run["median_seconds"] == pytest.approx(statistics.median(run["wall_seconds"]))
        # the end-to-end wall time covers the method's own stages
        assert all(w >= t["total"] for w, t in zip(run["wall_seconds"], run["timings"], strict=True))
    assert set(methods["retrain"]["median_stages"]) == {"train", "total"}
    assert methods["ssd_computed"]["diagnostics"]["full_fisher"] == "computed"
    assert methods["ssd_stored"]["diagnostics"]["full_fisher"] == "stored"
    assert results["setup"]["prototypes"] == "stored" and results["setup"]["epochs"] == 1
    assert results["setup"]["train"] == 250 and results["setup"]["bits"] == 16

    for name, label in (
        ("ppp", "PPP"),
        ("ssd_computed", "SSD (computed Fisher)"),
        ("ssd_stored", "SSD (stored Fisher)"),
    ):
        ratio = methods["retrain"]["median_seconds"] / methods[name]["median_seconds"]
        assert results["speedups"][name] == pytest.approx(ratio)
        target = results["targets"][f"retrain_over_{name}"]
        assert target["passed"] == (ratio >= target["at_least"])
        assert (
            f"speed-up Retrain/{label}: {ratio:.1f}x (target >= {target['at_least']:g}x) "
            f"{'PASS' if target['passed'] else 'MISS'}" in printed
        )

    heads = results["fisher"]["heads"]
    assert heads["parameters"] == [
        "image_head.linear.weight",
        "image_head.linear.bias",
        "text_head.linear.weight",
        "text_head.linear.bias",
    ]
    assert heads["samples"] == 64 and heads["generic_path_layers_per_batch"] == 0
    assert heads["ratio"] == pytest.approx(heads["per_sample_seconds"] / heads["batch_seconds"])
    assert f"ratio {heads['ratio']:.2f}x (target <= 2x)" in printed
    assert results["fisher"]["all"]["parameters"] == "all"
    assert "Fisher per_sample/batch on all parameters" in printed
    assert results["environment"]["torch_threads"] == results["setup"]["threads"]


def test_unlearn_speed_rejects_training_flags_with_a_checkpoint(tmp_path: Path) -> None:
    script = load_script("unlearn_speed")
    with pytest.raises(CrossforgetError, match="--checkpoint brings its own recipe"):
        script.main(["--checkpoint", str(tmp_path), "--epochs", "1"])
    with pytest.raises(CrossforgetError, match="neither a checkpoint nor holds bits8/"):
        script.main(["--checkpoint", str(tmp_path), "--bits", "8", "--device", "cpu"])


@pytest.mark.slow
def test_train_speed_compares_both_paths_on_the_same_batches(tmp_path: Path, capsys: pytest.CaptureFixture):
    script = load_script("train_speed")
    out = tmp_path / "train.json"
    summary = script.main(["--items", "400", "--threads", "1", "--bits", "16", "--json", str(out)])
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert summary["same_batches"] is True and summary["steps"] == 2 and summary["train_items"] == 200
    assert summary["first_loss"]["reference"] == pytest.approx(summary["first_loss"]["current"], abs=1e-5)
    wall = summary["wall_seconds"]
    overall = sum(wall["reference"].values()) / sum(wall["current"].values())
    assert summary["speedup"]["overall"] == pytest.approx(overall)
    for stage in ("data", "forward", "backward", "optimiser"):
        assert summary["speedup"][stage] == pytest.approx(wall["reference"][stage] / wall["current"][stage])
        assert any(line.startswith(stage) for line in printed)
    assert printed[-1] == f"overall: {overall:.1f}x"
