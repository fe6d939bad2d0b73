"""Shared fixtures: a tiny scenes dataset and a tiny trained hashing checkpoint (seconds on a CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spinning threads on shared cores
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_DATA = [
    "--data-option",
    "num_items=400",
    "--data-option",
    "image_size=32",
    "--num-query",
    "60",
    "--num-train",
    "250",
]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the scenes cache of the test run away from the user's cache."""
    os.environ["CROSSFORGET_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-bit model trained for one epoch on 250 scenes items; folder holds bits16/."""
    from crossforget.cli import main

    out = tmp_path_factory.mktemp("runs") / "original"
    code = main(["train", *TINY_DATA, "--bits", "16", "--epochs", "1", "--out", str(out)])
    assert code == 0
    return out


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (tests that need it skip when it is absent)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
