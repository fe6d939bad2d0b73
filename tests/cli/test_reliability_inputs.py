"""Every remaining traceback of the bad-input survey is one ``error:`` line now (issue 11, part 4):
damaged checkpoint configs, unwritable outputs, bad model options, non-UTF-8 data files, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossforget.core.errors import CrossforgetError
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs
from tests.conftest import TINY_DATA
from tests.reliability import assert_clean_error, make_jsonl

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def work(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("inputs")
    shutil.copytree(tiny_checkpoint / "bits16", work / "K")
    return work


def _damaged(work: Path, tmp_path: Path, damage) -> Path:
    """A copy of the checkpoint whose config.json is ``damage(config)`` (bytes, or JSON-able)."""
    copy = tmp_path / "damaged"
    shutil.copytree(work / "K", copy)
    config = json.loads((copy / "config.json").read_text())
    result = damage(config)
    data = result if isinstance(result, bytes) else json.dumps(result).encode()
    (copy / "config.json").write_bytes(data)
    return copy


def _with(key, value):
    def damage(config):
        config[key] = value
        return config

    return damage


def _without(key):
    def damage(config):
        del config[key]
        return config

    return damage


def _model_bits(value):
    def damage(config):
        config["model"]["bits"] = value
        return config

    return damage


CONFIG_DAMAGE = [
    (
        "class list one longer",
        lambda c: {**c, "class_names": c["class_names"] + ["unicorn"]},
        "class names but",
    ),
    ("class list one shorter", lambda c: {**c, "class_names": c["class_names"][:-1]}, "class names but"),
    ("a JSON list", lambda c: [c], "holds a JSON list"),
    ("not UTF-8", lambda c: b"\xff\xfe" + json.dumps(c).encode(), "not UTF-8"),
    ("missing model", _without("model"), "'model' must be a JSON object"),
    ("missing loss", _without("loss"), "'loss' must be a JSON object"),
    ("missing dataset", _without("dataset"), "'dataset' must be a JSON object"),
    ("model a string", _with("model", "small"), "'model' must be a JSON object"),
    ("bits a string", _model_bits("16"), "model.bits must be a positive integer"),
    ("bits zero", _model_bits(0), "model.bits must be a positive integer"),
    ("deep JSON", lambda c: b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (
        "tokenizer missing",
        lambda c: {**c, "model": {k: v for k, v in c["model"].items() if k != "tokenizer"}},
        "cannot build",
    ),
    (
        "dataset spec unknown key",
        lambda c: {**c, "dataset": {**c["dataset"], "colour": 1}},
        "dataset must be",
    ),
    ("margin not a number", lambda c: {**c, "loss": {**c["loss"], "margin": "x"}}, "margin and alpha_reg"),
]


@pytest.mark.parametrize(("what", "damage", "message"), CONFIG_DAMAGE, ids=[c[0] for c in CONFIG_DAMAGE])
def test_damaged_checkpoint_config_is_one_line(what, damage, message, work: Path, tmp_path: Path, capsys):
    checkpoint = _damaged(work, tmp_path, damage)
    argv = ["evaluate", "--checkpoint", checkpoint, "--forget", "dog", "--out", tmp_path / "o"]
    assert_clean_error(argv, capsys, [tmp_path], message)


def test_backup_sibling_folders_are_not_checkpoints(work: Path, tmp_path: Path) -> None:
    (tmp_path / "bits16").mkdir()
    shutil.copytree(work / "K", tmp_path / "bits16", dirs_exist_ok=True)
    shutil.copytree(work / "K", tmp_path / "bits_backup")
    assert checkpoint_dirs(tmp_path) == [tmp_path / "bits16"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_config_loads_or_fails_in_one_line(work: Path, tmp_path: Path, draw) -> None:
    """Replace one entry of the config (top level or one level down) with any JSON value."""
    config = json.loads((work / "K" / "config.json").read_text())
    key = draw.draw(st.sampled_from(sorted(config)))
    target = config
    if isinstance(config[key], dict) and config[key] and draw.draw(st.booleans()):
        target, key = config[key], draw.draw(st.sampled_from(sorted(config[key])))
    target[key] = draw.draw(JSON_VALUES)
    folder = tmp_path / f"fuzz{draw.draw(st.integers(0, 10**9))}"
    shutil.copytree(work / "K", folder)
    (folder / "config.json").write_text(json.dumps(config))
    try:
        load_hashing_checkpoint(folder)
    except CrossforgetError as exc:
        assert "\n" not in str(exc)
    finally:
        shutil.rmtree(folder)


# --- outputs that cannot be written are refused before any work -------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", *TINY_DATA, "--out", "/sys/crossforget-test/out"], "cannot be written"),
        (["train", *TINY_DATA, "--out", "{T}/file.txt/out"], "is a file, not a folder"),
        (["train", *TINY_DATA, "--out", "{T}/file.txt"], "exists and is not a folder"),
        (["unlearn", "--checkpoint", "{K}", "--forget", "dog", "--out", "{T}/file.txt/u"], "is a file"),
        (["evaluate", "--checkpoint", "{K}", "--forget", "dog", "--out", "{T}/file.txt"], "not a folder"),
        (["evaluate", "--checkpoint", "{K}", "--forget", "dog", "--out", "/sys/x"], "cannot be written"),
        (["data", "preview", *TINY_DATA, "--out", "{T}"], "is a folder; name a file"),
        (["data", "preview", *TINY_DATA, "--out", "{T}/file.txt/p.png"], "is a file, not a folder"),
        (["plot", "density", "--checkpoint", "{K}", "--out", "{T}/file.txt/d.png"], "is a file"),
        (["report", "{T}", "--out", "/sys/crossforget-report"], "cannot be written"),
    ],
)
def test_unwritable_output_fails_before_any_work(argv, message, work: Path, tmp_path: Path, capsys):
    (tmp_path / "file.txt").write_text("x")
    filled = [a.format(T=tmp_path, K=work / "K") for a in argv]
    assert_clean_error(filled, capsys, [tmp_path, work], message)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path: Path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        argv = ["train", *TINY_DATA, "--out", locked / "out"]
        assert_clean_error(argv, capsys, [tmp_path], "cannot be written")
    finally:
        locked.chmod(0o700)


# --- model options, data files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("cnn_width=0", "whole number >= 1"),
        ("dropout=2", "in [0, 1)"),
        ("dropout=nan", "in [0, 1)"),
        ("feature_dim=abc", "whole number >= 1"),
        ("image_size=4", "whole number >= 8"),
        ("embed_dim=true", "whole number"),
        ("foo=1", "takes no --model-option ['foo']"),
        ("max_text_length=8", "takes no --model-option ['max_text_length']"),
    ],
)
def test_bad_model_option(option: str, message: str, tmp_path: Path, capsys) -> None:
    argv = ["train", *TINY_DATA, "--model-option", option, "--out", tmp_path / "t"]
    assert_clean_error(argv, capsys, [tmp_path], message)


@pytest.mark.parametrize(
    ("file", "message"),
    [("pairs.jsonl", "line 3: not UTF-8 text"), ("classes.txt", "is not UTF-8 text (line 2)")],
)
def test_non_utf8_data_files(file: str, message: str, tmp_path: Path, capsys) -> None:
    root = make_jsonl(tmp_path / "data", items=6)
    lines = (root / file).read_bytes().split(b"\n")
    lines[{"pairs.jsonl": 2, "classes.txt": 1}[file]] += b" \xff\xfe"
    (root / file).write_bytes(b"\n".join(lines))
    argv = ["data", "info", "--dataset", "jsonl", "--data-root", root]
    assert_clean_error(argv, capsys, [tmp_path], message)


# --- startup: --help imports nothing heavy; Ctrl-C and SIGTERM are one line ----------------------


def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_top_level_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\nfrom crossforget.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'optuna', 'rich') if m in sys.modules))"
    )
    out, err = _python(code).communicate(timeout=60)
    assert out.strip().splitlines()[-1] == "[]", err
    assert "unlearn" in out and "COMMAND" in out


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_interrupt_while_starting_is_one_line(signum: int, code: int, word: str, tmp_path: Path) -> None:
    """The signal arrives while the command's modules (torch, ...) are still being imported."""
    program = (
        "import sys\nfrom crossforget.cli import main\n"
        "print('started', flush=True)\nsys.exit(main(sys.argv[1:]))"
    )
    process = _python(program, "train", *TINY_DATA, "--out", str(tmp_path / "out"))
    assert process.stdout.readline().strip() == "started"
    time.sleep(0.3)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(word), err
    assert not list(tmp_path.iterdir())
