"""SIGKILL at every stage of a forget request: the previous version keeps serving, intact.

Each request runs ``crossforget forget`` in a child process with ``CROSSFORGET_FAULT_STAGE`` naming
the stage at which it kills itself. Children fork from a forkserver that has imported the package
once, so each costs a fraction of a second instead of a fresh interpreter's import of torch.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path

import pytest

from crossforget.index.forget import FAULT_ENV, STAGES, IndexForgetRequest, forget
from crossforget.index.search import Searcher
from crossforget.index.store import audit_log, open_index
from tests.index.conftest import FAST_PPP

FAST = {"neighbour_samples": 50, "retain_samples": 100}

QUERIES = ("a dog on a beach", "a cat on a couch", "two people in a park")


def _child(argv: list[str], stage: str) -> None:
    os.environ[FAULT_ENV] = stage
    from crossforget.cli import main

    sys.exit(main(argv))


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["crossforget.cli", "crossforget.index.forget", "tests.index.test_faults"])
    return context


def _answers(index: Path) -> list[list[tuple[str, int]]]:
    searcher = Searcher(index)
    return [[(h.item, h.distance) for h in searcher.search_text(q, k=20).hits] for q in QUERIES]


def test_sigkill_at_each_stage_leaves_the_previous_version(
    index_copy: Path, forkserver: multiprocessing.context.BaseContext
) -> None:
    before = open_index(index_copy)
    answers = _answers(index_copy)
    argv = ["forget", str(index_copy), "--classes", "dog", "--delete-class-items", *FAST_PPP]
    for stage in STAGES:
        child = forkserver.Process(target=_child, args=(argv, stage))
        child.start()
        child.join(120)
        assert child.exitcode == -signal.SIGKILL, stage
        after = open_index(index_copy)
        assert (after.name, after.sha256, after.model_sha256) == (
            before.name,
            before.sha256,
            before.model_sha256,
        )
        assert _answers(index_copy) == answers, stage
        assert audit_log(index_copy).verify() == [] and audit_log(index_copy).head().seq == 0, stage
    leftovers = [p.name for p in (index_copy / "versions").iterdir()]
    assert "v000000" in leftovers and len(leftovers) > 1  # the killed writers' folders, removed next
    rerun = IndexForgetRequest(classes=["dog"], delete_class_items=True, options=FAST)
    record = forget(index_copy, rerun, log=lambda t: None)
    assert record["seq"] == 1 and [p.name for p in (index_copy / "versions").iterdir()] == ["v000001"]
    assert audit_log(index_copy).verify() == [] and _answers(index_copy) != answers


def test_an_unknown_fault_stage_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from crossforget.core.errors import CrossforgetError
    from crossforget.index.forget import fault_hook_from_env

    monkeypatch.setenv(FAULT_ENV, "lunch")
    with pytest.raises(CrossforgetError, match="names no stage; stages: unlearn, delete"):
        fault_hook_from_env()
