"""The CLIP backbone: encoders and tokenizer against transformers' own CLIP, the CLI pipeline, errors.

A tiny randomly initialised CLIP (2 layers, 32 wide, 32 px images) and a tiny byte-level BPE
vocabulary are written to a temporary folder and used as ``--clip-model``; nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError

TINY_SCENES = ["--data-option", "num_items=300", "--num-query", "50", "--num-train", "200"]
MERGES = ["t h", "th e</w>", "d o", "do g</w>", "c a", "ca t</w>", "o n</w>", "a n", "an d</w>"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread avoids OpenMP contention on a busy CPU (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tiny_clip(folder: Path) -> Path:
    """A random CLIP (save_pretrained) plus vocab.json/merges.txt that CLIPTokenizer reads."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel

    alphabet = sorted(ByteLevel.alphabet())
    tokens = alphabet + [c + "</w>" for c in alphabet] + [m.replace(" ", "") for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    end = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
            "bos_token_id": end - 1,
            "eos_token_id": end,
            "pad_token_id": end,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="session")
def clip_run(tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of CLIP fine-tuning through the CLI; holds bits16/."""
    out = tmp_path_factory.mktemp("clip-runs") / "original"
    code = main(
        [
            "train",
            *TINY_SCENES,
            "--backbone",
            "clip",
            "--clip-model",
            str(tiny_clip),
            "--bits",
            "16",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def _hasher(tiny_clip: Path, bits: int = 16):
    from crossforget.tasks.hashing.training import initial_model, model_config

    config = model_config(None, None, bits, {"backbone": "clip", "clip_model": str(tiny_clip)})
    return initial_model(config), config


def _features(output: object) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features, 4.x a tensor."""
    return getattr(output, "pooler_output", output)


def test_encoders_match_transformers_clip(tiny_clip: Path) -> None:
    from transformers import CLIPModel, CLIPTokenizer

    (model, preprocessor), _ = _hasher(tiny_clip)
    reference = CLIPModel.from_pretrained(tiny_clip, local_files_only=True).eval()
    tokenizer = CLIPTokenizer.from_pretrained(tiny_clip, local_files_only=True)
    texts = ["the dog on the sofa", "A cat, and 2 dogs!", "dog " * 40]
    ids, mask = preprocessor.texts(texts)
    pixels = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    images = preprocessor.images(pixels)
    model.eval()
    with torch.no_grad():
        text_ref = _features(reference.get_text_features(input_ids=ids, attention_mask=mask))
        image_ref = _features(reference.get_image_features(pixel_values=images))
        torch.testing.assert_close(model.text_encoder(ids, mask), text_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.image_encoder(images), image_ref, rtol=1e-5, atol=1e-5)
    expected = tokenizer(texts, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"])
    assert torch.equal(mask, expected["attention_mask"])
    assert ids[2, -1] == tokenizer.eos_token_id and int(mask[2].sum()) == 32  # truncated, end token kept


def test_image_normalisation_and_resize(tiny_clip: Path) -> None:
    (_, preprocessor), _ = _hasher(tiny_clip)
    pixels = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    out = preprocessor.images(pixels)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std)
    flat = torch.full((1, 48, 64, 3), 200, dtype=torch.uint8)  # not square, not 32 px: resize + crop
    resized = preprocessor.images(flat)
    assert resized.shape == (1, 3, 32, 32)
    torch.testing.assert_close(resized, ((200 / 255 - mean) / std).expand(1, 3, 32, 32))


def test_config_rebuilds_without_the_clip_folder(tiny_clip: Path, tmp_path: Path) -> None:
    from crossforget.models.factory import build_hasher

    (model, preprocessor), config = _hasher(tiny_clip)
    config = json.loads(json.dumps(config))  # what a checkpoint stores
    config["clip_model"] = str(tmp_path / "gone")
    rebuilt, rebuilt_pre = build_hasher(config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt_pre.to_config() == preprocessor.to_config()
    ids, mask = rebuilt_pre.texts(["a dog"])
    rebuilt.eval()
    model.eval()
    batch = {
        "images": preprocessor.images(torch.zeros(1, 32, 32, 3, dtype=torch.uint8)),
        "text_ids": ids,
        "text_mask": mask,
    }
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(batch), rebuilt(batch), strict=True))


def test_missing_clip_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from crossforget.models.clip import clip_model_config

    with pytest.raises(CrossforgetError, match="cannot find CLIP model"):
        clip_model_config({"clip_model": str(tmp_path / "nope")})
    code = main(
        [
            "train",
            *TINY_SCENES,
            "--backbone",
            "clip",
            "--clip-model",
            str(tmp_path / "nope"),
            "--bits",
            "16",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot find CLIP model" in err and "--clip-model /path/to/folder" in err
    assert not (tmp_path / "out").exists()


def test_clip_recipe_defaults_and_overrides(clip_run: Path, tiny_clip: Path, tmp_path: Path) -> None:
    recipe = json.loads((clip_run / "bits16" / "config.json").read_text())["training"]["recipe"]
    assert (recipe["encoder_lr"], recipe["head_lr"], recipe["weight_decay"]) == (1e-5, 1e-3, 0.2)
    assert (recipe["betas"], recipe["eps"], recipe["warmup_fraction"], recipe["grad_clip"]) == (
        [0.9, 0.98],
        1e-6,
        0.1,
        1.0,
    )
    assert recipe["augment"] is False and recipe["epochs"] == 1
    from crossforget.engine.training import TrainingRecipe, recipe_for

    assert recipe_for("small") == TrainingRecipe() and recipe_for("clip").epochs == 100
    from crossforget.cli import build_parser
    from crossforget.cli.common import recipe_from_args

    args = build_parser().parse_args(
        ["train", "--backbone", "clip", "--head-lr", "0.005", "--out", str(tmp_path)]
    )
    assert (recipe_from_args(args).encoder_lr, recipe_from_args(args).head_lr) == (1e-5, 0.005)


def test_checkpoint_reloads_to_identical_codes(tiny_clip: Path, tmp_path: Path) -> None:
    from crossforget.data.registry import DatasetSpec
    from crossforget.engine.training import recipe_for
    from crossforget.models.inputs import TensorStore
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint, save_hashing_checkpoint
    from crossforget.tasks.hashing.evaluation import encode
    from crossforget.tasks.hashing.training import load_data, train_hashing

    loaded = load_data(DatasetSpec("scenes", {"num_items": 300}, 50, 200))
    recipe = recipe_for("clip")
    recipe.epochs = 1
    saved = train_hashing(
        loaded,
        16,
        recipe,
        0,
        model_options={"backbone": "clip", "clip_model": str(tiny_clip)},
        show_progress=False,
    )
    save_hashing_checkpoint(tmp_path / "ckpt", saved)
    reloaded = load_hashing_checkpoint(tmp_path / "ckpt")
    items = loaded.split.query[:20]
    before = encode(saved.model, loaded.store, items)
    after = encode(reloaded.model, TensorStore(loaded.data, reloaded.preprocessor), items)
    assert torch.equal(before.image, after.image) and torch.equal(before.text, after.text)
    assert reloaded.config["model"]["pretrained"] is True


def test_bad_model_reinitialises_only_the_heads(clip_run: Path) -> None:
    from crossforget.data.forget import ForgetRequest
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
    from crossforget.tasks.hashing.task import run_method
    from crossforget.tasks.hashing.training import load_data
    from crossforget.unlearning.methods import create_method

    saved = load_hashing_checkpoint(clip_run / "bits16")
    new, _ = run_method(
        create_method("bad_model"), saved, load_data(saved.dataset_spec), ForgetRequest(["dog"]), 3
    )
    old_state, new_state = saved.model.state_dict(), new.model.state_dict()
    changed = {k for k in old_state if not torch.equal(old_state[k], new_state[k])}
    assert changed == {k for k in old_state if k.startswith(("image_head.", "text_head."))}


def test_random_model_has_no_pretrained_clip_weights(clip_run: Path) -> None:
    """Bad Teacher's incompetent teacher: random everywhere; Retrain's start: pretrained CLIP encoders."""
    from crossforget.data.forget import ForgetRequest
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
    from crossforget.tasks.hashing.task import hashing_task
    from crossforget.tasks.hashing.training import load_data

    saved = load_hashing_checkpoint(clip_run / "bits16")
    task = hashing_task(saved, load_data(saved.dataset_spec), ForgetRequest(["dog"]))
    fresh = [task.fresh_model(s).state_dict() for s in (0, 1)]
    random = [task.random_model(s).state_dict() for s in (0, 1)]
    encoder = [k for k in fresh[0] if k.startswith("image_encoder.") and k.endswith("weight")]
    assert encoder and all(torch.equal(fresh[0][k], fresh[1][k]) for k in encoder)  # the pretrained weights
    assert all(not torch.equal(random[0][k], random[1][k]) for k in encoder if random[0][k].std() > 0)
    # (the tiny CLIP folder itself was written from torch seed 0, so compare seed 1 with it)
    assert any(not torch.equal(random[1][k], fresh[0][k]) for k in encoder)


def test_train_unlearn_evaluate_through_the_cli(clip_run: Path, tmp_path: Path) -> None:
    unlearned = tmp_path / "ppp"
    code = main(
        [
            "unlearn",
            "--checkpoint",
            str(clip_run),
            "--method",
            "ppp",
            "--forget",
            "dog",
            "--out",
            str(unlearned),
            "--device",
            "cpu",
            "--option",
            "neighbour_samples=64",
            "--option",
            "retain_samples=64",
        ]
    )
    assert code == 0
    code = main(["evaluate", "--checkpoint", str(unlearned), "--forget", "dog", "--device", "cpu"])
    assert code == 0
    results = json.loads((unlearned / "evaluation.json").read_text())
    assert [r["direction"] for r in results["records"]] == ["I2T", "T2I"]
    for record in results["records"]:
        assert all(0.0 <= record[m] <= 1.0 for m in ("retain", "forget_label", "forget_any"))
    config = json.loads((unlearned / "config.json").read_text())
    assert config["unlearning"]["method"] == "ppp" and config["model"]["backbone"] == "clip"
    diagnostics = json.loads((unlearned / "unlearn.json").read_text())["runs"]["16"]["diagnostics"]
    assert len(diagnostics["neighbours"]) == 3 and diagnostics["samples"]["neighbour"] <= 64


def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "clip_gpu.py"
    spec = importlib.util.spec_from_file_location("clip_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--train-steps",
            "1",
            "--fisher-samples",
            "32",
            "--budget",
            "5",
            "--out",
            str(tmp_path / "bench.json"),
        ]
    )
    assert json.loads((tmp_path / "bench.json").read_text()) == summary
    assert summary["train"]["steps"] == 1 and summary["fisher_per_sample"]["samples"] == 32
    for key in ("train", "fisher_batch", "fisher_per_sample", "decode"):
        assert summary[key]["items_per_s"] > 0
    assert summary["extract"]["image_items_per_s"] > 0 and summary["extract"]["text_items_per_s"] > 0
