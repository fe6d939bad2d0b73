"""Kills, caches, tuning workers, damaged images, split sizes and paths out of the data root
(issue 11, part 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from crossforget.core.io import remove_stale_temporaries
from crossforget.data.scenes.cache import load_scenes
from crossforget.engine.training import TrainingRecipe
from crossforget.experiments.tuning import Dimension, open_storage, run_study, sampler_seed_for
from crossforget.tasks.hashing.reference import trained_reference
from crossforget.tasks.hashing.training import load_data
from tests.conftest import TINY_DATA
from tests.reliability import assert_clean_error, jsonl_train_args, make_jsonl, run_cli

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- what a kill leaves, and how the next run cleans it -------------------------------------------


def test_stale_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path: Path, capsys) -> None:
    dead, out = _dead_pid(), tmp_path / "out"
    stale_dir = tmp_path / f".out.{dead}.k3j2.tmp"
    stale_dir.mkdir()
    (stale_dir / "weights.safetensors").write_bytes(b"x" * 100)
    stale_file = tmp_path / f".out.{dead}.zz1.tmp"
    stale_file.write_bytes(b"y")
    live = tmp_path / f".out.{os.getpid()}.abc.tmp"
    live.mkdir()
    other = tmp_path / f".other.{dead}.abc.tmp"
    other.mkdir()
    assert sorted(remove_stale_temporaries(out)) == sorted([stale_dir, stale_file])
    assert live.exists() and other.exists() and not stale_dir.exists() and not stale_file.exists()
    assert f"left by a run that was killed (pid {dead})" in capsys.readouterr().err


def test_a_backup_left_between_the_two_renames_is_restored(tmp_path: Path) -> None:
    backup = tmp_path / ".out.old"
    backup.mkdir()
    (backup / "results.json").write_text("{}")
    remove_stale_temporaries(tmp_path / "out")
    assert (tmp_path / "out" / "results.json").is_file() and not backup.exists()
    backup.mkdir()
    remove_stale_temporaries(tmp_path / "out")  # the result exists: the backup is just removed
    assert not backup.exists()


def _start_train(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    program = "import sys\nfrom crossforget.cli import main\nsys.exit(main(sys.argv[1:]))"
    argv = ["train", *TINY_DATA, "--bits", "16", "32", "--epochs", "3", "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, "-c", program, *argv], env=env, stderr=subprocess.PIPE, text=True
    )


def _wait_for_temporary(folder: Path, process: subprocess.Popen) -> Path:
    for _ in range(1200):
        found = [p for p in folder.glob(".out.*.tmp") if p.is_dir()]
        if found:
            return found[0]
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    raise AssertionError("train never created its temporary folder")


def test_sigterm_during_train_leaves_nothing(tmp_path: Path) -> None:
    process = _start_train(tmp_path / "out")
    _wait_for_temporary(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("terminated")
    assert list(tmp_path.iterdir()) == []


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path: Path, capsys) -> None:
    process = _start_train(tmp_path / "out")
    leftover = _wait_for_temporary(tmp_path, process)
    process.kill()
    process.wait(timeout=60)
    assert leftover.is_dir()  # SIGKILL cannot be handled
    argv = ["train", *TINY_DATA, "--bits", "16", "--epochs", "1", "--out", tmp_path / "out"]
    assert run_cli(argv) == 0
    assert "left by a run that was killed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- damaged caches are rebuilt -----------------------------------------------------------------


@pytest.mark.parametrize("content", ["[]", '{"params": 5}', "{" * 50_000, '{"captions": [[1]]}'])
def test_damaged_scenes_cache_is_rebuilt(content: str, tmp_path: Path) -> None:
    first = load_scenes(num_items=40, image_size=32, seed=3, cache_dir=tmp_path)
    (meta,) = (tmp_path / "scenes").glob("*.json")
    meta.write_text(content)
    again = load_scenes(num_items=40, image_size=32, seed=3, cache_dir=tmp_path)
    assert again.captions == first.captions and (again.labels == first.labels).all()
    assert isinstance(json.loads(meta.read_text()), dict)  # rewritten


def test_cache_entry_of_other_classes_is_retrained(tmp_path: Path) -> None:
    spec_args = {"num_items": 400, "image_size": 32}
    from crossforget.data.registry import DatasetSpec

    loaded = load_data(DatasetSpec("scenes", spec_args, num_query=60, num_train=250))
    recipe = TrainingRecipe(epochs=1)
    _, cached = trained_reference(tmp_path, loaded, 16, recipe, 0)
    assert not cached
    (entry,) = tmp_path.iterdir()
    config = json.loads((entry / "config.json").read_text())
    config["class_names"] = list(reversed(config["class_names"]))  # same length, other classes
    (entry / "config.json").write_text(json.dumps(config))
    saved, cached = trained_reference(tmp_path, loaded, 16, recipe, 0)
    assert not cached and saved.class_names == loaded.data.class_names
    assert json.loads((entry / "config.json").read_text())["class_names"] == loaded.data.class_names
    assert trained_reference(tmp_path, loaded, 16, recipe, 0)[1]  # and now it is used


# --- tuning workers and resuming ------------------------------------------------------------------


def test_worker_seeds_never_collide() -> None:
    seeds = {(s, o): sampler_seed_for(s, o) for s in range(4) for o in range(200)}
    assert len(set(seeds.values())) == len(seeds)


def test_two_workers_draw_different_trials(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    space = {"x": Dimension("float", 0.0, 1.0), "y": Dimension("float", 0.0, 1.0)}

    def steps(params, record):
        yield params["x"] + params["y"]

    for trials in range(1, 7):  # workers with --sampler-seed 1 and 2 take turns, one trial each
        seed = 1 if trials % 2 else 2
        kwargs = {"storage": storage, "study_name": "w", "trials": trials, "setup": {}, "sampler_seed": seed}
        run_study(steps, 1, space, {}, console=Console(quiet=True), **kwargs)
    study = optuna.load_study(study_name="w", storage=storage)
    drawn = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(drawn) == 6 and len(set(drawn)) == 6


# --- images, split sizes, image size, paths -------------------------------------------------------


def test_truncated_images_are_counted_and_recorded(tmp_path: Path, capsys) -> None:
    root = make_jsonl(tmp_path / "data")
    image = root / "img" / "003.png"
    image.write_bytes(image.read_bytes()[:-60])  # the header is fine, the pixel data is cut short
    out = tmp_path / "K"
    assert run_cli(["train", *jsonl_train_args(root), "--bits", "16", "--epochs", "1", "--out", out]) == 0
    config = json.loads((out / "bits16" / "config.json").read_text())
    summary = json.loads((out / "train_summary.json").read_text())
    assert config["training"]["grey_images"] == 1 and config["training"]["grey_image_examples"] == [
        str(image)
    ]
    assert summary["runs"]["16"]["grey_images"] == 1
    assert "1 image(s) could not be decoded" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--num-query", "--num-train"])
def test_zero_split_sizes_are_refused(flag: str, tmp_path: Path, capsys) -> None:
    argv = ["data", "info", "--data-option", "num_items=400", flag, "0"]
    assert_clean_error(argv, capsys, [tmp_path], f"{flag} must be at least 1")


def test_scenes_image_size_is_the_model_input_size(tiny_checkpoint: Path) -> None:
    """TINY_DATA draws 32-pixel scenes: the model reads 32 pixels, it does not upscale to 48."""
    config = json.loads((tiny_checkpoint / "bits16" / "config.json").read_text())
    assert config["model"]["image_size"] == 32


@pytest.mark.parametrize("image", ["../outside.png", "/etc/hostname", "img/../../outside.png"])
def test_images_outside_the_data_root_need_a_flag(image: str, tmp_path: Path, capsys) -> None:
    root = make_jsonl(tmp_path / "data", items=6)
    (tmp_path / "outside.png").write_bytes((root / "img" / "000.png").read_bytes())
    lines = (root / "pairs.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"image": image, "caption": "a dog", "labels": ["dog"]})
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["data", "info", "--dataset", "jsonl", "--data-root", root, "--num-query", "1", "--num-train", "3"]
    assert_clean_error(argv, capsys, [tmp_path], "outside")
    if image != "/etc/hostname":  # not an image: the loader would skip it as unreadable
        assert run_cli([*argv, "--allow-outside-root"]) == 0
