"""The command line end to end on tiny data, and its errors."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crossforget.cli
from crossforget.cli import main
from tests.conftest import TINY_DATA


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_evaluate_writes_json_csv_markdown(tiny_checkpoint: Path, tmp_path: Path, capsys):
    assert (
        main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--forget", "dog", "--out", str(tmp_path)])
        == 0
    )
    payload = json.loads((tmp_path / "evaluation.json").read_text())
    (record,) = [r for r in payload["records"] if r["direction"] == "I2T"]
    for key in ("retain", "forget_label", "forget_any"):
        assert 0.0 <= record[key] <= 1.0
        assert 0.0 < record["chance"][key] < 1.0
    assert (tmp_path / "evaluation.csv").read_text().startswith("setting,")
    assert "| 16-I2T |" in (tmp_path / "evaluation.md").read_text()
    assert "D_f mAP (forget label)" in capsys.readouterr().out


def test_unlearn_never_modifies_its_input_and_evaluates(tiny_checkpoint: Path, tmp_path: Path):
    before = _digest(tiny_checkpoint)
    out = tmp_path / "ppp"
    code = main(
        [
            "unlearn",
            "--checkpoint",
            str(tiny_checkpoint),
            "--method",
            "ppp",
            "--forget",
            "dog",
            "--alpha",
            "5",
            "--option",
            "neighbour_samples=50",
            "--out",
            str(out),
            "--evaluate",
        ]
    )
    assert code == 0
    assert _digest(tiny_checkpoint) == before
    report = json.loads((out / "unlearn.json").read_text())
    run = report["runs"]["16"]
    assert run["diagnostics"]["samples"]["neighbour"] <= 50
    assert run["diagnostics"]["guard"]["steps"][0]["alpha"] == 5.0  # the guard starts at --alpha
    assert set(run["timings"]) >= {
        "prototypes",
        "fisher_forget",
        "fisher_neighbour",
        "fisher_retain",
        "total",
    }
    assert (out / "config.json").is_file() and (out / "evaluation.json").is_file()


def test_params_file_feeds_method_options(tiny_checkpoint: Path, tmp_path: Path):
    params = tmp_path / "best.json"
    params.write_text(json.dumps({"method": "ssd", "params": {"alpha": 3.0, "lam": 0.5}}))
    out = tmp_path / "ssd"
    assert (
        main(
            [
                "unlearn",
                "--checkpoint",
                str(tiny_checkpoint),
                "--method",
                "ssd",
                "--forget",
                "dog",
                "--params",
                str(params),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["unlearning"]["options"]["alpha"] == 3.0 and config["unlearning"]["options"]["lam"] == 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "nosuch", "--out", "{tmp}/x"], "valid datasets"),
        (["evaluate", "--checkpoint", "{ckpt}", "--forget", "unicorn"], "valid classes"),
        (
            ["unlearn", "--checkpoint", "{ckpt}", "--method", "magic", "--forget", "dog", "--out", "{tmp}/y"],
            "choose one of",
        ),
        (
            ["unlearn", "--checkpoint", "{ckpt}", "--forget", "dog", "--k", "500", "--out", "{tmp}/z"],
            "lower k",
        ),
        (["unlearn", "--checkpoint", "{tmp}", "--forget", "dog", "--out", "{tmp}/w"], "holds no checkpoint"),
        (["train", *TINY_DATA, "--bits", "16", "--out", "{ckpt}"], "not empty"),
        *[
            (
                [
                    "unlearn",
                    "--checkpoint",
                    "{ckpt}",
                    "--forget",
                    "dog",
                    "--retain-budget",
                    v,
                    "--out",
                    "{tmp}/y",
                ],
                "--retain-budget",
            )
            for v in ("-1", "nan", "inf", "lots")
        ],  # fmt: skip
    ],
)
def test_bad_input_gives_one_line_errors(argv, message, tiny_checkpoint: Path, tmp_path: Path, capsys):
    filled = [a.format(tmp=tmp_path, ckpt=tiny_checkpoint) for a in argv]
    assert main(filled) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_failed_run_leaves_no_output_folder(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "never"
    assert (
        main(
            [
                "unlearn",
                "--checkpoint",
                str(tiny_checkpoint),
                "--forget",
                "dog",
                "--k",
                "500",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_data_preview_and_info(tmp_path: Path, capsys):
    png = tmp_path / "preview.png"
    assert main(["data", "preview", *TINY_DATA, "--count", "4", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert main(["data", "info", *TINY_DATA]) == 0
    assert "dog" in capsys.readouterr().out


def test_importing_the_cli_sets_nothing_and_loads_no_torch() -> None:
    """The environment is set by main(), where the program starts, not by importing the package."""
    code = (
        "import os, sys\nimport crossforget.cli\n"
        "print('torch' in sys.modules, 'OMP_WAIT_POLICY' in os.environ, 'HF_HUB_OFFLINE' in os.environ)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False", "False"], done.stderr


def test_command_modules_import_no_other_command_module() -> None:
    """Command modules share code only through cli/common.py (and the library below the CLI)."""
    package = Path(crossforget.cli.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crossforget.cli"):
                assert node.module == "crossforget.cli.common", f"{path.name} imports {node.module}"


def test_the_guard_line_names_per_class_thresholds_when_the_guard_refined():
    from crossforget.cli.unlearn import guard_summary

    common = {"alpha": 43.36, "steps": [{}] * 3, "acted_on": "retain", "met": True}
    assert (
        guard_summary(common) == "forgetting guard: alpha 43.36 after 3 probe step(s), acted on retain, met"
    )
    refined = {**common, "alpha": 7.5, "alphas": [120.0, 7.5], "met": False}
    assert guard_summary(refined).startswith("forgetting guard: per-class alphas 120, 7.5 after 3")
    assert guard_summary(refined).endswith("NOT met")
