"""Checkpoint round trip and the errors a user sees for broken or mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crossforget.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint


def _save(path: Path) -> Checkpoint:
    ck = Checkpoint(
        {"kind": "test"},
        {"w": torch.arange(6.0).view(2, 3)},
        {"proxies": torch.ones(2, 2)},
        {"prototypes": {"image": torch.zeros(3, 2)}},
    )
    save_checkpoint(path, ck)
    return ck


def test_round_trip(tmp_path: Path):
    _save(tmp_path)
    back = load_checkpoint(tmp_path)
    assert torch.equal(back.model_state["w"], torch.arange(6.0).view(2, 3))
    assert torch.equal(back.loss_state["proxies"], torch.ones(2, 2))
    assert torch.equal(back.extras["prototypes"]["image"], torch.zeros(3, 2))
    assert back.config["tensors"]["model.w"] == [2, 3]


def test_config_and_weights_that_disagree_name_the_file(tmp_path: Path):
    _save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tensors"]["model.w"] = [3, 2]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CrossforgetError, match="weights.safetensors does not match"):
        load_checkpoint(tmp_path)


def test_corrupt_weights_and_missing_files(tmp_path: Path):
    _save(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CrossforgetError, match="corrupt"):
        load_checkpoint(tmp_path)
    with pytest.raises(CrossforgetError, match="config.json is missing"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CrossforgetError, match="not valid JSON"):
        load_checkpoint(tmp_path)


def test_hashing_checkpoint_reloads_to_identical_codes(tiny_checkpoint: Path):
    from crossforget.data.registry import load_dataset
    from crossforget.models.inputs import TensorStore
    from crossforget.tasks.hashing.evaluation import encode

    first = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    second = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    data, split = load_dataset(first.dataset_spec)
    store = TensorStore(data, first.preprocessor)
    a, b = encode(first.model, store, split.query[:20]), encode(second.model, store, split.query[:20])
    assert torch.equal(a.image, b.image) and torch.equal(a.text, b.text)
    assert set(first.prototypes) == {"image", "text"}
    assert first.prototypes["image"].shape == (len(first.class_names), 16)
    assert torch.equal(first.loss.proxies, second.loss.proxies)
