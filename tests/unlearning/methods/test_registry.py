"""The registry: what the built-in methods declare (pinned to the constants it replaced), discovery of
a plugin folder, and a toy method in one file running through unlearn, demo and tune end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError
from crossforget.experiments.tuning import search_space
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.columns import column_label
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import (
    Dimension,
    method_label,
    method_names,
    option_flags,
    reference_columns,
    seeding,
    tunable_methods,
)
from crossforget.unlearning.methods.registry import PLUGIN_ENV
from tests.conftest import TINY_DATA
from tests.unlearning.methods.test_contract import check_contract, check_declaration

TOY = Path(__file__).parent / "toy_plugin" / "noise.py"
BUILTIN = ["amnesiac", "bad_model", "bad_teacher", "finetune", "ppp", "retrain", "ssd"]


def test_builtin_declarations_reproduce_the_constants_they_replace():
    assert method_names() == BUILTIN
    table1 = {
        "original": "Original",
        "bad_model": "Bad",
        "retrain": "Retrain",
        "finetune": "Finetune",
        "bad_teacher": "Bad Teacher",
        "amnesiac": "Amnesiac",
        "ssd": "SSD",
        "ppp": "PPP",
    }
    assert {m: method_label(m) for m in table1} == table1
    # Table 2 marks the classification methods extended to hashing: a table rule, not a second label.
    table2 = {**table1, "bad_teacher": "Bad Teacher*", "amnesiac": "Amnesiac*"}
    assert {m: column_label(m) for m in table2} == table2
    assert method_label("unknown") == column_label("unknown") == "unknown"
    columns = ["original", *BUILTIN]
    assert {m for m in columns if seeding(m) == "fixed"} == {"original", "bad_model", "retrain"}  # Table 1
    assert {m for m in columns if seeding(m) != "sample"} == {"original", "bad_model", "retrain", "finetune"}
    assert reference_columns() == ("original", "retrain")
    assert option_flags() == {
        "epochs": (),
        "forget_samples": (),
        "alpha": (),
        "tau": (),
        "lam": ("--lambda",),
        "lam_max": ("--lambda-max",),
        "k": (),
        "estimator": (),
    }
    assert tunable_methods() == ["ppp", "ssd"]
    assert search_space("ssd") == {"alpha": Dimension("log", 1.0, 1000.0), "lam": Dimension("log", 0.1, 10.0)}
    assert search_space("ppp")["lam_max"] == Dimension("float", 1e-3, 1.0)


def test_a_missing_plugin_folder_is_one_line(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv(PLUGIN_ENV, str(tmp_path / "absent"))
    with pytest.raises(CrossforgetError, match="do not exist"):
        method_names()
    assert main(["unlearn", "--help"]) == 2
    assert "do not exist" in capsys.readouterr().err


def test_a_plugin_may_not_take_a_builtin_name(tmp_path: Path, monkeypatch):
    (tmp_path / "ppp_again.py").write_text(
        TOY.read_text().replace('"noise",\n    NoiseOptions', '"ppp",\n    NoiseOptions')
    )
    monkeypatch.setenv(PLUGIN_ENV, str(tmp_path))
    with pytest.raises(CrossforgetError, match="already defined"):
        method_names()


@pytest.fixture
def toy_plugin(tmp_path: Path, monkeypatch) -> Path:
    """The toy method as the one new file of a plugin folder named by CROSSFORGET_METHODS."""
    folder = tmp_path / "methods"
    folder.mkdir()
    shutil.copy(TOY, folder / TOY.name)
    monkeypatch.setenv(PLUGIN_ENV, str(folder))
    return folder


def test_a_method_in_one_new_file_runs_everywhere(toy_plugin: Path, tiny_checkpoint: Path, tmp_path, capsys):
    """The toy is registered, passes the shared contract, and runs in unlearn, demo and tune (~15 s)."""
    assert method_names() == [*BUILTIN, "noise"] and tunable_methods() == ["ppp", "ssd", "noise"]
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    check_declaration("noise")
    check_contract("noise", saved, load_data(saved.dataset_spec), tiny_checkpoint)

    for command in ("unlearn", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "noise" in capsys.readouterr().out.replace("\n", " ")
    out = tmp_path / "unlearned"
    argv = ["unlearn", "--checkpoint", str(tiny_checkpoint), "--forget", "dog", "--method", "noise"]
    assert main([*argv, "--sigma", "0.002", "--out", str(out)]) == 0
    assert json.loads((out / "unlearn.json").read_text())["method"] == "noise"
    assert main([*argv, "--sigma", "-1", "--out", str(tmp_path / "refused")]) == 2
    assert "option sigma=-1 must be > 0" in capsys.readouterr().err

    demo = tmp_path / "demo"
    argv = ["demo", *TINY_DATA, "--bits", "16", "--seeds", "0", "1", "--epochs", "1"]
    assert (
        main([*argv, "--methods", "original", "noise", "--cache", str(tmp_path / "c"), "--out", str(demo)])
        == 0
    )
    results = json.loads((demo / "results.json").read_text())
    assert sorted(results["per_seed"]["noise"]["16"]) == ["0", "1"]  # seeding="sample": once per seed
    assert "Noise D_f" in (demo / "results.md").read_text()

    tune = tmp_path / "tune"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    argv = ["tune", "--method", "noise", "--checkpoint", str(tiny_checkpoint), "--trials", "2"]
    argv += [
        "--validation-size",
        "60",
        "--storage",
        storage,
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(tune),
    ]
    assert main(argv) == 0
    best = json.loads((tune / "best.json").read_text())
    assert best["method"] == "noise" and 1e-4 <= best["params"]["sigma"] <= 1e-1
