"""Every registered method honours the same contract (timm-style test over the registry)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from crossforget.data.forget import ForgetRequest
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.task import run_method
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import (
    create_method,
    method_info,
    method_names,
    method_options,
    validate_options,
)

# Keep the contract test fast: training-based methods run one epoch here.
FAST = {
    "retrain": {"epochs": 1},
    "finetune": {"epochs": 1},
    "bad_teacher": {"epochs": 1},
    "amnesiac": {"epochs": 1},
}


def _fast_options(name: str) -> dict:
    fields = method_options(name).__dataclass_fields__
    return {k: v for k, v in FAST.get(name, {}).items() if k in fields}


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture(scope="module")
def setup(tiny_checkpoint: Path):
    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    return saved, load_data(saved.dataset_spec)


@pytest.mark.parametrize("name", method_names())
def test_method_contract(name: str, setup, tiny_checkpoint: Path):
    check_contract(name, *setup, tiny_checkpoint)


@pytest.mark.parametrize("name", method_names())
def test_method_declaration(name: str):
    check_declaration(name)


def check_declaration(name: str) -> None:
    """What a method declares: a label, a seeding kind, and a search space and flags over its options
    whose defaults pass the option checks and whose ranges lie inside the options' declared ranges."""
    info = method_info(name)
    assert info.name == name and info.factory.name == name
    assert info.label.strip() and info.seeding in ("fixed", "training", "sample")
    options = {f.name: f for f in dataclasses.fields(info.options)}
    assert set(info.flags) <= set(options) and set(info.search_space) <= set(options)
    defaults = {k: f.default for k, f in options.items() if f.default is not dataclasses.MISSING}
    assert validate_options(name, defaults) == defaults
    for key, dimension in info.search_space.items():
        bounds = options[key].metadata.get("range")
        if bounds is not None:
            assert dimension.low in bounds and dimension.high in bounds, (name, key)


def check_contract(name: str, saved, loaded, tiny_checkpoint: Path) -> None:
    """Same architecture, input model and files untouched, deterministic under a seed, timings reported."""
    before_files = _digest(tiny_checkpoint / "bits16")
    before_state = {k: v.clone() for k, v in saved.model.state_dict().items()}
    method = create_method(name, **_fast_options(name))
    request = ForgetRequest(["dog"])

    first, result = run_method(method, saved, loaded, request, seed=0)
    second, _ = run_method(create_method(name, **_fast_options(name)), saved, loaded, request, seed=0)

    # same architecture
    new_state = first.model.state_dict()
    assert list(new_state) == list(before_state)
    assert all(new_state[k].shape == before_state[k].shape for k in new_state)
    # the input model and its checkpoint files are untouched
    assert all(torch.equal(saved.model.state_dict()[k], v) for k, v in before_state.items())
    assert _digest(tiny_checkpoint / "bits16") == before_files
    # deterministic under a seed
    assert all(torch.equal(new_state[k], second.model.state_dict()[k]) for k in new_state), name
    # timings are reported
    assert result.timings["total"] >= 0
    assert first.config["unlearning"]["method"] == name
