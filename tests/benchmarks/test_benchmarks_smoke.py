"""Benchmark scripts run end to end on tiny settings and report numbers consistent with their own data."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from crossforget.core.errors import CrossforgetError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


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


def test_index_speed_reports_identical_rankings_and_ratios(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    script = load_script("index_speed")
    out = tmp_path / "index.json"
    argv = ["--database", "3000", "--queries", "20", "--nlist", "16", "--nprobe", "1", "16", "--repeat", "1"]
    argv += ["--checkpoint", str(tiny_checkpoint / "bits16"), "--cache", str(tmp_path / "cache")]
    argv += ["--option", "neighbour_samples=50", "--option", "retain_samples=100"]
    assert script.main([*argv, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["search"]["identical"] is True
    assert set(results["search"]["speedup_vs"]) == {"project", "torch", "numpy"}
    for kind in ("random", "clustered"):
        assert results["ivf"][kind]["nprobe"]["16"]["recall_at_k"] == 1.0  # every list probed: exact
    forget = results["forget"]
    assert forget["database_items"] == 340 and forget["encode_seconds_per_1000_items"] > 0
    assert forget["speedup"] == pytest.approx(
        (forget["retrain_training_seconds"] + forget["retrain_reencode_seconds"]) / forget["forget_seconds"]
    )
    assert "identical ids and distances (ties by database index): True" in capsys.readouterr().out


@pytest.mark.slow
def test_distributed_scaling_reports_both_process_counts(tmp_path: Path) -> None:
    # A subprocess: the spawned ranks import the script as their __main__, by its path.
    out = tmp_path / "scaling.json"
    argv = ["--items", "400", "--train-items", "64", "--batch", "32", "--fisher-samples", "32"]
    argv += ["--repeats", "1", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "distributed_scaling.py"), *argv], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["world_size"] for r in rows] == [1, 2]
    assert rows[0]["train_ratio"] == 1.0 and rows[1]["fisher_ratio"] > 0
    assert all(r["train_items_per_second"] > 0 and r["fisher_items_per_second"] > 0 for r in rows)
    assert "processes" in done.stdout


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
