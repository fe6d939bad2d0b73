"""Frozen-backbone mode: features extract -> clip-features train -> unlearn -> evaluate, and its guards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError
from tests.models.test_clip import _one_thread, write_tiny_clip  # noqa: F401  (_one_thread: autouse fixture)

DATA = ["--data-option", "num_items=300"]
SPLIT = ["--num-query", "50", "--num-train", "200"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def features_file(clip_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features") / "scenes-clip.safetensors"
    code = main(
        [
            "features",
            "extract",
            *DATA,
            "--clip-model",
            str(clip_folder),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "64",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def heads_run(features_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hash heads trained on the cached features; the dataset comes from the file."""
    out = tmp_path_factory.mktemp("feature-runs") / "original"
    code = main(
        [
            "train",
            "--backbone",
            "clip-features",
            "--features",
            str(features_file),
            *SPLIT,
            "--bits",
            "16",
            "--epochs",
            "5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_file_holds_every_item_and_caption(features_file: Path, clip_folder: Path) -> None:
    from crossforget.data.registry import DatasetSpec, load_dataset
    from crossforget.tasks.hashing.features import pretrained_encoders

    tensors = load_file(str(features_file))
    with safe_open(str(features_file), framework="pt") as handle:
        metadata = handle.metadata()
    data, _ = load_dataset(DatasetSpec("scenes", {"num_items": 300}, 50, 200))
    per_item = max(len(c) for c in data.captions)
    assert tensors["image"].shape == (300, 16) and tensors["text"].shape == (300, per_item, 16)
    assert tensors["num_captions"].tolist() == [len(c) for c in data.captions]
    assert json.loads(metadata["dataset"]) == {"name": "scenes", "options": {"num_items": 300}}
    assert metadata["clip_model"] == str(clip_folder)
    # Independent recomputation of a few rows with the pretrained encoders (float16 storage: ~1e-3).
    image_encoder, text_encoder, preprocessor = pretrained_encoders(str(clip_folder))
    rows = [0, 7, 299]
    item = 5
    with torch.no_grad():
        pixels = torch.from_numpy(data.images.load(rows, 32))
        expected_image = image_encoder(preprocessor.images(pixels))
        texts = [data.captions[item][j % len(data.captions[item])] for j in range(per_item)]
        expected_text = text_encoder(*preprocessor.texts(texts))
    torch.testing.assert_close(tensors["image"][rows].float(), expected_image, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(tensors["text"][item].float(), expected_text, rtol=2e-3, atol=2e-3)


def test_feature_store_batches(features_file: Path) -> None:
    from crossforget.data.registry import DatasetSpec, load_dataset
    from crossforget.models.features import FeatureInputs, file_sha256

    data, _ = load_dataset(DatasetSpec("scenes", {"num_items": 300}, 50, 200))
    store = FeatureInputs(str(features_file), file_sha256(features_file), 16).open_store(data, None)
    tensors = load_file(str(features_file))
    indices = torch.tensor([3, 1, 250])
    batch = store.batch(indices, torch.tensor([0, 1, 2]))
    assert torch.equal(batch["image_features"], tensors["image"][indices].float())
    assert torch.equal(batch["text_features"][1], tensors["text"][1, 1].float())
    assert torch.equal(batch["labels"], torch.from_numpy(data.labels[[3, 1, 250]]).float())
    assert len(store) == 300 and store.preprocessor.to_config()["feature_dim"] == 16


def test_heads_train_unlearn_and_evaluate(heads_run: Path, tmp_path: Path) -> None:
    config = json.loads((heads_run / "bits16" / "config.json").read_text())
    assert config["model"]["backbone"] == "clip-features"
    assert len(config["model"]["features"]["sha256"]) == 64
    assert config["dataset"]["options"] == {"num_items": 300}
    assert set(config["tensors"]) >= {"model.image_head.linear.weight", "model.text_head.linear.weight"}
    assert not any(k.startswith(("model.image_encoder", "model.text_encoder")) for k in config["tensors"])
    unlearned = tmp_path / "ppp"
    code = main(
        [
            "unlearn",
            "--checkpoint",
            str(heads_run),
            "--method",
            "ppp",
            "--forget",
            "dog",
            "--out",
            str(unlearned),
            "--device",
            "cpu",
            "--evaluate",
        ]
    )
    assert code == 0
    results = json.loads((unlearned / "evaluation.json").read_text())
    assert len(results["records"]) == 2
    assert all(0.0 <= r["retain"] <= 1.0 for r in results["records"])
    code = main(["evaluate", "--checkpoint", str(heads_run), "--forget", "dog", "--device", "cpu"])
    assert code == 0


def test_moved_or_changed_file_is_refused(
    heads_run: Path, features_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    backup = tmp_path / "backup.safetensors"
    shutil.copy(features_file, backup)
    try:
        features_file.unlink()
        assert (
            main(["evaluate", "--checkpoint", str(heads_run), "--forget", "dog", "--out", str(tmp_path)]) == 2
        )
        err = capsys.readouterr().err
        assert "is missing" in err and "move it back" in err
        tensors = load_file(str(backup))
        tensors["image"] = tensors["image"] * 2
        with safe_open(str(backup), framework="pt") as handle:
            metadata = handle.metadata()
        from safetensors.torch import save_file

        save_file(tensors, str(features_file), metadata)
        assert (
            main(["unlearn", "--checkpoint", str(heads_run), "--forget", "dog", "--out", str(tmp_path / "u")])
            == 2
        )
        assert "changed since this model was trained" in capsys.readouterr().err
    finally:
        shutil.copy(backup, features_file)


def test_dataset_mismatch_and_existing_output(
    features_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        [
            "train",
            "--backbone",
            "clip-features",
            "--features",
            str(features_file),
            "--data-option",
            "num_items=280",
            *SPLIT,
            "--bits",
            "16",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2 and "pass the same --dataset" in capsys.readouterr().err
    code = main(["features", "extract", *DATA, "--out", str(features_file)])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    code = main(["train", "--features", str(features_file), *SPLIT, "--out", str(tmp_path / "y")])
    assert code == 2 and "--backbone clip-features" in capsys.readouterr().err
    from crossforget.models.features import features_model_config

    with pytest.raises(CrossforgetError, match="needs --features"):
        features_model_config({"backbone": "clip-features"}, {})
