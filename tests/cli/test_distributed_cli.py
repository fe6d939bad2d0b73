"""The commands under ``torchrun --standalone --nproc-per-node 2`` (gloo on the CPU): same results as one
process, rank 0 alone writes, and a failing rank fails the launch with its message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crossforget.cli import main
from tests.conftest import TINY_DATA

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TRAIN = ["train", *TINY_DATA, "--bits", "16", "--epochs", "1", "--device", "cpu"]


def torchrun(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The references run with one thread, like each torchrun rank (thread counts reorder float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "weights.safetensors"))


def test_train_and_unlearn_under_torchrun_match_one_process(tmp_path: Path, one_thread: None) -> None:
    done = torchrun("-m", "crossforget", *TRAIN, "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*TRAIN, "--out", str(tmp_path / "one")]) == 0
    assert _listing(tmp_path / "two") == _listing(tmp_path / "one")
    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert (summary["world_size"], summary["batch_size"], summary["per_rank_batch_size"]) == (2, 128, 64)
    config = json.loads((tmp_path / "two" / "bits16" / "config.json").read_text())
    assert config["training"]["world_size"] == config["environment"]["world_size"] == 2
    one, two = _weights(tmp_path / "one" / "bits16"), _weights(tmp_path / "two" / "bits16")
    for name, value in one.items():  # tolerance as in test_distributed: 1e-5, 200x below one step
        torch.testing.assert_close(two[name].double(), value.double(), rtol=0.0, atol=1e-5, msg=name)

    unlearn = ["unlearn", "--checkpoint", str(tmp_path / "one"), "--forget", "dog", "--method", "ppp"]
    unlearn += ["--device", "cpu", "--evaluate"]
    done = torchrun("-m", "crossforget", *unlearn, "--out", str(tmp_path / "ppp-two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*unlearn, "--out", str(tmp_path / "ppp-one")]) == 0
    assert _listing(tmp_path / "ppp-two") == _listing(tmp_path / "ppp-one")
    one, two = _weights(tmp_path / "ppp-one"), _weights(tmp_path / "ppp-two")
    for name, value in one.items():  # only the Fisher sums regroup (1e-7 relative)
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-7, msg=name)
    report = json.loads((tmp_path / "ppp-two" / "unlearn.json").read_text())
    assert report["environment"]["world_size"] == 2
    one, two = (json.loads((tmp_path / n / "evaluation.json").read_text()) for n in ("ppp-one", "ppp-two"))
    assert two["records"] == one["records"]
    # Nothing else appeared beside the outputs (rank 1 builds its copies in the system temp folder).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "ppp-one", "ppp-two", "two"]


def test_evaluate_under_torchrun_gives_identical_results(
    tiny_checkpoint: Path, tmp_path: Path, one_thread: None
) -> None:
    evaluate = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--forget", "dog", "--device", "cpu"]
    done = torchrun("-m", "crossforget", *evaluate, "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Retrieval mAP (%)") == 1  # rank 0 alone prints the table
    assert main([*evaluate, "--out", str(tmp_path / "one")]) == 0
    one, two = (json.loads((tmp_path / n / "evaluation.json").read_text()) for n in ("one", "two"))
    assert two["records"] == one["records"]
    assert (one["environment"]["world_size"], two["environment"]["world_size"]) == (1, 2)


def test_a_failing_rank_fails_the_launch_with_its_message(tmp_path: Path) -> None:
    script = tmp_path / "fail_on_rank_one.py"
    script.write_text(
        "import os, sys\n"
        "import crossforget.cli.train as command\n"
        "from crossforget.cli import main\n"
        "from crossforget.core.errors import CrossforgetError\n"
        "def broken(*args, **kwargs):\n"
        "    raise CrossforgetError('rank one failed on purpose')\n"
        "if os.environ['RANK'] == '1':\n"
        "    command.train_hashing = broken\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = torchrun(str(script), *TRAIN, "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    assert "error: rank 1 of 2: rank one failed on purpose" in done.stderr
    assert "rank one failed on purpose" in done.stderr.split("Root Cause")[-1]  # torchrun's summary
    assert not (tmp_path / "out").exists()  # rank 0 was stopped before publishing anything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fail_on_rank_one.py"]


def test_single_process_commands_refuse_torchrun(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["data", "info", *TINY_DATA]) == 2
    assert "`crossforget data` runs as one process" in capsys.readouterr().err
