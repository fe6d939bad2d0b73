"""Sweeps (Figs. 3 and 4) on the tiny checkpoint: files, statistics by hand, figures and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError
from crossforget.data.scenes.vocabulary import CLASS_NAMES
from crossforget.engine.results import deltas
from crossforget.engine.training import TrainingRecipe
from crossforget.experiments.sweeps import class_sets
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.reference import reference_key
from crossforget.tasks.hashing.training import load_data, model_config

T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student t quantiles, two-sided 95%
FAST = ["--method-option", "ppp.neighbour_samples=40", "--method-option", "ppp.retain_samples=80"]


def _folders(cache: Path, out: Path) -> list[str]:
    return ["--cache", str(cache), "--out", str(out)]


def assert_picture(path: Path) -> None:
    """A PNG that opens, has a real size and is not one flat colour."""
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05
    assert (rgb.mean(axis=2) < 0.5).mean() > 0.005  # some dark ink: lines, text, bars


@pytest.fixture(scope="module")
def samples_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "samples"
    cache = out.parent / "cache"
    options = ["--sizes", "4", "8", "--seeds", "0", "1", "2"]
    code = main(
        ["sweep", "samples", "--checkpoint", str(tiny_checkpoint), *options, *_folders(cache, out), *FAST]
    )
    assert code == 0
    return out


def test_samples_sweep_keeps_every_seed_and_its_intervals_are_right(samples_run: Path):
    results = json.loads((samples_run / "results.json").read_text())
    assert [p["label"] for p in results["points"]] == ["4", "8"]
    assert results["points"][0]["options"] == {"forget_samples": 4}
    for label, size in (("4", 4), ("8", 8)):  # the size reached the method
        assert results["diagnostics"][label]["ppp"]["16"]["1"]["samples"]["forget"] == size
    for label in ("4", "8"):
        by_method = results["per_seed"][label]
        assert set(by_method) == {"original", "retrain", "ppp"}
        assert set(by_method["ppp"]["16"]) == {"0", "1", "2"}
        assert len(by_method["retrain"]["16"]) == 1
        # overall = per seed mean over bits x directions, then mean +- t * s / sqrt(n)
        values = [
            100 * np.mean([by_method["ppp"]["16"][s][d]["retain"] for d in ("I2T", "T2I")])
            for s in ("0", "1", "2")
        ]
        entry = results["overall"][label]["ppp"]["retain"]
        assert entry["values"] == pytest.approx(values)
        mean, std = np.mean(values), np.std(values, ddof=1)
        assert entry["mean"] == pytest.approx(mean) and entry["std"] == pytest.approx(std)
        assert entry["ci_high"] - entry["mean"] == pytest.approx(T_975[2] * std / math.sqrt(3))
    assert results["environment"]["crossforget"] and results["config"]["seeds"] == [0, 1, 2]


def test_references_are_shared_between_points(samples_run: Path):
    results = json.loads((samples_run / "results.json").read_text())
    assert results["per_seed"]["4"]["retrain"] == results["per_seed"]["8"]["retrain"]
    assert results["diagnostics"]["4"]["retrain"]["16"]["0"] == {"cached": False}


def test_delta_is_against_retrain_and_original(samples_run: Path):
    results = json.loads((samples_run / "results.json").read_text())
    summary = results["summary"]["8"]
    ppp, retrain, original = summary["ppp"], summary["retrain"], summary["original"]
    keys = ("16-I2T", "16-T2I")
    expected_f = np.mean(
        [abs(ppp[k]["forget_label"]["mean"] - retrain[k]["forget_label"]["mean"]) for k in keys]
    )
    expected_r = np.mean([abs(ppp[k]["retain"]["mean"] - original[k]["retain"]["mean"]) for k in keys])
    assert results["delta"]["8"]["ppp"]["forget"] == pytest.approx(expected_f)
    assert results["delta"]["8"]["ppp"]["retain"] == pytest.approx(expected_r)
    assert deltas(summary) == results["delta"]["8"]


def test_sample_sweep_files_and_figure(samples_run: Path):
    for name in ("results.csv", "results.md", "results_detail.csv", "results_detail.md"):
        assert (samples_run / name).is_file()
    markdown = (samples_run / "results.md").read_text()
    assert "95% CI" in markdown and "\\|Δ\\| D_f" in markdown
    assert_picture(samples_run / "results.png")


def test_classes_sweep_runs_each_set_with_its_own_retrain(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "classes"
    options = ["--sets", "dog", "dog, boat", "--seeds", "0", "1", *_folders(tmp_path / "cache", out)]
    code = main(["sweep", "classes", "--checkpoint", str(tiny_checkpoint), *options, *FAST])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert [p["forget"] for p in results["points"]] == [["dog"], ["dog", "boat"]]
    assert [p["label"] for p in results["points"]] == ["(i)", "(ii)"]
    retrains = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("retrain"))
    assert len(retrains) == 2 and "boat-dog" in retrains[0] + retrains[1]
    assert results["partitions"]["(ii)"]["train_forget"] > results["partitions"]["(i)"]["train_forget"]
    assert_picture(out / "results.png")


def test_paper_sets_use_stand_ins_the_data_has():
    scenes = class_sets(None, CLASS_NAMES)
    # (iv) = (iii) + airplane, bench, pizza, bed: the paper's "eight classes", bench -> chair on scenes
    assert scenes[3] == ("dog", "boat", "orange", "vase", "airplane", "chair", "pizza", "bed")
    assert all(set(scenes[i]) < set(scenes[i + 1]) for i in range(3))
    coco_like = [*CLASS_NAMES, "bench"]
    assert class_sets(None, coco_like)[3] == (
        "dog",
        "boat",
        "orange",
        "vase",
        "airplane",
        "bench",
        "pizza",
        "bed",
    )
    with pytest.raises(CrossforgetError, match="valid classes"):
        class_sets(["dog,bench"], CLASS_NAMES)


def test_retrain_of_a_checkpoint_is_the_entry_demo_cached(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    recipe = TrainingRecipe.from_dict(saved.config["training"]["recipe"])
    # trained with defaults (32-px scenes are read at 32 px): the recorded config is what demo resolves
    resolved = model_config(loaded.data, loaded.split, 16, {}, loaded.spec)
    assert resolved == saved.config["model"]
    key = reference_key(loaded, recipe, 0, ["dog"], saved.config["model"])
    assert key == reference_key(loaded, recipe, 0, ["dog"], resolved)
    assert key != reference_key(loaded, recipe, 0, ["dog"], {**saved.config["model"], "cnn_width": 8})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classes", "--sets", "dog", ""], "names no class"),
        (["classes", "--sets", " , "], "names no class"),
        (["classes", "--sets", "dog,unicorn"], "valid classes"),
        (["samples", "--sizes", "20", "100000"], "larger than D_f"),
        (["samples", "--sizes", "0"], ">= 1"),
        (["samples", "--sizes", "4", "4"], "twice"),
        (["samples", "--sizes", "4", "--methods", "finetune"], "takes no forget sample size"),
        (["classes", "--methods", "retrain"], "cannot sweep"),
    ],
)
def test_bad_input_fails_before_any_work(argv, message, tiny_checkpoint: Path, tmp_path: Path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    code = main(["sweep", argv[0], "--checkpoint", str(tiny_checkpoint), *argv[1:], *_folders(cache, out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not cache.exists() and not out.exists()
