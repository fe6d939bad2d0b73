"""Table 1 end to end on a tiny scenes-single run: layout, statistics, files, cache and the command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rich.console import Console

from crossforget.cli import main
from crossforget.cli.common import method_options_from_args
from crossforget.core.errors import CrossforgetError
from crossforget.data.scenes.single import generate_scenes_single
from crossforget.experiments.table1 import METHODS, Table1Config, run_table1, table_rows, write_table1
from crossforget.tasks.classification.recipe import ClassifierRecipe

FAST = {"finetune": {"epochs": 1}, "amnesiac": {"epochs": 1}}
TINY = [
    "--data-option",
    "num_train=160",
    "--data-option",
    "num_test=80",
    "--data-option",
    "num_classes=8",
    "--epochs",
    "1",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    data = generate_scenes_single(num_train=160, num_test=80, num_classes=8, include=["dog"])
    cache = tmp_path_factory.mktemp("cache")
    config = Table1Config(
        forget=["dog"],
        seeds=[0, 1],
        recipe=ClassifierRecipe(epochs=1),
        method_options=FAST,
    )
    quiet = Console(quiet=True)
    first = run_table1(data, config, cache, quiet)
    second = run_table1(data, config, cache, quiet)
    return first, second


def test_every_method_and_seed_is_recorded(tiny_run):
    results, _ = tiny_run
    assert list(results["per_seed"]) == list(METHODS)
    for method, by_seed in results["per_seed"].items():
        assert list(by_seed) == (["0"] if method in ("original", "bad_model", "retrain") else ["0", "1"])
        for scores in by_seed.values():
            assert set(scores) >= {"forget_acc", "retain_acc", "mia", "mia_shadow"}
            assert all(0.0 <= scores[k] <= 1.0 for k in ("forget_acc", "retain_acc", "mia", "mia_shadow"))
    assert results["partition"] == {"train_forget": 20, "train_retain": 140}
    assert "ppp" not in results["config"]["method_options"]  # the registry defaults, guarded
    assert all("acted_on" in d["guard"] for d in results["diagnostics"]["ppp"].values())
    assert results["environment"]["torch"] and results["run_timings"]["total"] > 0


def test_summary_is_mean_and_sample_std_of_the_seeds_in_percent(tiny_run):
    results, _ = tiny_run
    values = [s["retain_acc"] for s in results["per_seed"]["ssd"].values()]
    entry = results["summary"]["ssd"]["retain_acc"]
    assert entry["mean"] == pytest.approx(100 * np.mean(values))
    assert entry["std"] == pytest.approx(100 * np.std(values, ddof=1))
    assert entry["values"] == pytest.approx([100 * v for v in values])
    assert results["summary"]["original"]["forget_acc"]["n"] == 1


def test_paper_layout(tiny_run):
    results, _ = tiny_run
    columns, rows = table_rows(results)
    assert columns == [
        "Metric",
        "Original",
        "Bad",
        "Retrain",
        "Finetune",
        "Bad Teacher",
        "Amnesiac",
        "SSD",
        "PPP",
    ]
    assert [r[0] for r in rows] == ["D_f Acc", "D_r Acc", "MIA", "MIA (shadow)"]
    assert "±" not in rows[0][1] and "±" in rows[0][-1]
    mean = results["summary"]["ppp"]["retain_acc"]["mean"]
    assert rows[1][-1].startswith(f"{mean:.2f} ± ")


def test_references_come_from_the_cache_the_second_time(tiny_run):
    first, second = tiny_run
    assert first["diagnostics"]["original"]["0"]["cached"] is False
    assert second["diagnostics"]["original"]["0"]["cached"] is True
    assert second["diagnostics"]["retrain"]["0"]["cached"] is True
    assert second["shadow"]["shadow0"]["cached"] is True
    for method in ("original", "retrain", "bad_model", "ssd", "ppp"):
        assert second["per_seed"][method] == first["per_seed"][method], method


def test_written_files(tiny_run, tmp_path):
    results, _ = tiny_run
    write_table1(tmp_path, results, Console(quiet=True))
    assert {p.name for p in tmp_path.iterdir()} == {
        "results.json",
        "results.csv",
        "results.md",
        "results.png",
    }
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["per_seed"]["ppp"]["1"]["forget_acc"] == results["per_seed"]["ppp"]["1"]["forget_acc"]
    rows = list(csv.reader((tmp_path / "results.csv").open()))
    assert rows[0][0] == "Metric" and rows[1][0] == "D_f Acc"
    assert (tmp_path / "results.md").read_text().startswith("# Classification (%) forgetting dog")
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_method_options_parsing():
    assert method_options_from_args(["ppp.alpha=30", "ppp.k=2", "bad_teacher.lr=0.001"]) == {
        "ppp": {"alpha": 30, "k": 2},
        "bad_teacher": {"lr": 0.001},
    }
    with pytest.raises(CrossforgetError, match="METHOD.KEY=VALUE"):
        method_options_from_args(["alpha=3"])
    with pytest.raises(CrossforgetError, match="unknown method"):
        Table1Config(methods=["original", "magic"]).check()


def test_command_line(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [
        "table1",
        "--forget",
        "dog",
        *TINY,
        "--seeds",
        "0",
        "--methods",
        "original",
        "ssd",
        "--no-shadow",
        "--out",
        str(out),
        "--cache",
        str(cache),
    ]
    assert main(args) == 0
    assert (out / "results.md").is_file()
    assert "MIA (shadow)" not in (out / "results.md").read_text()
    assert main(args) == 2  # the folder is not empty
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_command_line_bad_input(tmp_path, capsys):
    assert main(["table1", "--forget", "unicorn", *TINY, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unicorn" in err and "valid classes" in err and "dog" in err
    assert main(["table1", "--dataset", "imagefolder", "--forget", "x", "--out", str(tmp_path / "b")]) == 2
    assert "--root" in capsys.readouterr().err
    (tmp_path / "flat" / "a").mkdir(parents=True)
    flat_folder = ["table1", "--dataset", "imagefolder", "--root", str(tmp_path / "flat"), "--forget", "a"]
    assert main([*flat_folder, "--out", str(tmp_path / "c")]) == 2
    assert "fewer than two classes" in capsys.readouterr().err
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "flat" / cls).mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "flat" / cls / "0.png")
    assert main([*flat_folder, "--out", str(tmp_path / "d")]) == 2
    assert "--test-fraction" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcd")
