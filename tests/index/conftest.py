"""A tiny live index (16 bits, 340 database items), built once; tests that write use a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FAST_PPP = ["--option", "neighbour_samples=50", "--option", "retain_samples=100"]


@pytest.fixture(scope="session")
def tiny_index(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crossforget.cli import main

    out = tmp_path_factory.mktemp("index") / "index"
    assert main(["index", "build", "--checkpoint", str(tiny_checkpoint / "bits16"), "--out", str(out)]) == 0
    return out


@pytest.fixture
def index_copy(tiny_index: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny index (the build closed its SQLite connections, so copying is safe)."""
    target = tmp_path / "index"
    shutil.copytree(tiny_index, target)
    return target
