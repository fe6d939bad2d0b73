"""Throughput of the CLIP path on one GPU: DSPH training step, feature extraction, PPP's Fisher pass.

No download and no dataset: a randomly initialised CLIP ViT-B/32 (``CLIPConfig()`` defaults: 224 px
images, 12+12 layers, 512-d embeddings), 32-token captions and random labels over 80 classes. Usage:

    .venv/bin/python benchmarks/clip_gpu.py                 # GPU sizes, well under 5 minutes on an H100
    .venv/bin/python benchmarks/clip_gpu.py --tiny --device cpu   # a tiny CLIP, end to end on a CPU

Measured (items per second, after warm-up, GPU synchronised):
- train: ``train_model`` steps of the DSPH loss, bf16 autocast, AdamW + proxies' SGD, batch 128
  (whole model fine-tuned, DSPH recipe);
- extract: image and caption embeddings under bf16 autocast, batch 256;
- fisher_batch / fisher_per_sample: ``diagonal_fisher`` over the whole model in float32, batches of 32
  as PPP uses them (per_sample: exact per-sample squared gradients, torch.func for the transformer);
- decode: JPEG decoding of 640x480 files by ``TensorStore`` with background threads (the data side).
The extraction and Fisher sections stop early when their time budget is spent and report what
they completed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from crossforget.core.device import autocast, resolve_device
from crossforget.core.errors import CrossforgetError
from crossforget.engine.training import recipe_for, train_model
from crossforget.losses.base import Batch
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.hashing import CrossModalHasher
from crossforget.unlearning.fisher import diagonal_fisher

if TYPE_CHECKING:
    from transformers import CLIPConfig

CLASSES = 80
TEXT_LENGTH = 32


def clip_config(tiny: bool) -> CLIPConfig:
    from transformers import CLIPConfig

    if not tiny:
        return CLIPConfig()  # ViT-B/32 defaults
    return CLIPConfig(
        text_config={
            "vocab_size": 600,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": TEXT_LENGTH,
            "bos_token_id": 598,
            "pad_token_id": 599,
            "eos_token_id": 599,
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


def build_model(tiny: bool, bits: int, device: torch.device) -> CrossModalHasher:
    """The production encoders (crossforget.models.clip) around a randomly initialised CLIPModel."""
    from transformers import CLIPModel

    from crossforget.models.clip import ClipImageEncoder, ClipTextEncoder

    torch.manual_seed(0)
    clip = CLIPModel(clip_config(tiny))
    return CrossModalHasher(ClipImageEncoder(clip), ClipTextEncoder(clip), bits).to(device)


class SyntheticStore:
    """A ``BatchSource`` of random, already preprocessed batches made on the device (no data loading)."""

    def __init__(self, count: int, image_size: int, vocab: int, device: torch.device) -> None:
        g = torch.Generator().manual_seed(1)
        self.labels = (torch.rand(count, CLASSES, generator=g) < 0.04).float()
        self.labels[torch.arange(count), torch.randint(0, CLASSES, (count,), generator=g)] = 1.0
        self.num_captions = torch.ones(count, dtype=torch.long)
        self.lengths = torch.randint(4, TEXT_LENGTH + 1, (count,), generator=g)
        self.image_size, self.vocab, self.device = image_size, vocab, device
        self.preprocessor = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> Batch:
        size, device = indices.numel(), self.device
        positions = torch.arange(TEXT_LENGTH, device=device).view(1, -1)
        lengths = self.lengths[indices].to(device).view(-1, 1)
        mask = (positions < lengths).long()
        ids = torch.randint(1, self.vocab - 2, (size, TEXT_LENGTH), device=device) * mask
        ids = torch.where(positions == lengths - 1, torch.full_like(ids, self.vocab - 1), ids)
        images = torch.randn(size, 3, self.image_size, self.image_size, device=device)
        return {
            "images": images,
            "text_ids": ids,
            "text_mask": mask,
            "labels": self.labels[indices].to(device),
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], int]) -> tuple[int, float]:
    _sync(device)
    start = time.perf_counter()
    done = work()
    _sync(device)
    return done, time.perf_counter() - start


def bench_train(
    model: CrossModalHasher, store: SyntheticStore, batch: int, steps: int, device: torch.device
) -> dict:
    """``steps`` batches through the real training loop (one epoch), after a two-step warm-up epoch."""
    loss = DSPHLoss(CLASSES, model.bits).to(device)
    recipe = recipe_for("clip")
    recipe.epochs, recipe.batch_size = 1, batch

    def run(count: int) -> int:
        train_model(model, loss, store, np.arange(batch * count), recipe, 0, show_progress=False)
        return count

    timed(device, lambda: run(2))
    done, seconds = timed(device, lambda: run(steps))
    return {"batch": batch, "steps": done, "seconds": seconds, "items_per_s": done * batch / seconds}


@torch.no_grad()
def bench_extract(
    model: CrossModalHasher,
    store: SyntheticStore,
    batch: int,
    steps: int,
    budget: float,
    device: torch.device,
) -> dict:
    model.eval()
    out: dict = {"batch": batch}
    for name, encoder, keys in (
        ("image", model.image_encoder, ("images",)),
        ("text", model.text_encoder, ("text_ids", "text_mask")),
    ):
        inputs = store.batch(torch.arange(batch))

        def run(count: int, encoder=encoder, keys=keys, inputs=inputs) -> int:
            for _ in range(count):
                with autocast(device):
                    encoder(*(inputs[k] for k in keys))
            return count

        timed(device, lambda: run(2))  # warm-up
        done, seconds, started = 0, 0.0, time.perf_counter()
        while done < steps and time.perf_counter() - started < budget / 2:
            count, spent = timed(device, lambda left=steps - done: run(min(5, left)))
            done, seconds = done + count, seconds + spent
        out[f"{name}_items_per_s"] = done * batch / seconds
    return out


def bench_fisher(
    model: CrossModalHasher,
    store: SyntheticStore,
    samples: int,
    estimator: str,
    budget: float,
    device: torch.device,
) -> dict:
    """The Fisher of the DSPH loss over ``samples`` items in batches of 32, float32, stopped at ``budget``."""
    loss = DSPHLoss(CLASSES, model.bits).to(device)
    loss.proxies.requires_grad_(False)
    started = time.perf_counter()
    count = 0

    def batches() -> Iterator[Batch]:
        nonlocal count
        for first in range(0, samples, 32):
            if count and time.perf_counter() - started > budget:
                return
            indices = torch.arange(first, min(samples, first + 32))
            count += indices.numel()
            yield store.batch(indices)

    diagonal_fisher(model, loss, batches(), estimator=estimator)  # includes its own first-call warm-up
    _sync(device)
    seconds = time.perf_counter() - started
    return {"estimator": estimator, "samples": count, "seconds": seconds, "items_per_s": count / seconds}


def bench_decode(files: int, batch: int, workers: int, image_size: int) -> dict:
    """JPEG decode + resize throughput of TensorStore's background threads (640x480 files)."""
    from PIL import Image

    from crossforget.data.container import FileImages, MultiModalData
    from crossforget.models.inputs import TensorStore, WordPreprocessor, iterate_batches
    from crossforget.models.tokenizer import WordTokenizer

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        base = rng.integers(0, 256, (480 // 8, 640 // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        paths = []
        for i in range(files):
            path = Path(tmp) / f"{i}.jpg"
            Image.fromarray(np.roll(base, i, axis=1)).save(path, quality=90)
            paths.append(path)
        data = MultiModalData("jpeg", ["a"], np.ones((files, 1)), [["x"]] * files, FileImages(paths))
        preprocessor = WordPreprocessor(image_size, WordTokenizer.build(["x"]))
        store = TensorStore(data, preprocessor, memory_budget=0, num_workers=workers)
        start = time.perf_counter()
        for _ in iterate_batches(store, np.arange(files), batch):
            pass
        seconds = time.perf_counter() - start
    return {"files": files, "workers": workers, "seconds": seconds, "items_per_s": files / seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--tiny", action="store_true", help="tiny CLIP and sizes (runs on a CPU in seconds)")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument(
        "--train-steps", type=int, default=None, help="timed training steps (default 40, tiny 3)"
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds per section (default 60, tiny 20)"
    )
    parser.add_argument(
        "--fisher-samples", type=int, default=None, help="samples per Fisher pass (256, tiny 64)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    tiny = args.tiny
    train_steps = args.train_steps or (3 if tiny else 40)
    budget = args.budget or (20.0 if tiny else 60.0)
    fisher_samples = args.fisher_samples or (64 if tiny else 256)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device: {device} ({gpu}); torch {torch.__version__}; CPU threads {torch.get_num_threads()}",
        flush=True,
    )
    started = time.perf_counter()
    model = build_model(tiny, args.bits, device)
    image_size = model.image_encoder.vision_model.config.image_size
    vocab = model.text_encoder.text_model.config.vocab_size
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {params / 1e6:.1f} M parameters, {image_size} px, built in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    store = SyntheticStore(max(fisher_samples, 128 * train_steps, 256), image_size, vocab, device)
    summary: dict = {
        "device": str(device),
        "gpu": gpu,
        "torch": torch.__version__,
        "tiny": tiny,
        "parameters": params,
        "image_size": image_size,
        "text_length": TEXT_LENGTH,
        "bits": args.bits,
    }
    workers = min(8, os.cpu_count() or 1)
    sections: dict[str, Callable[[], dict]] = {
        "train": lambda: bench_train(model, store, 16 if tiny else 128, train_steps, device),
        "extract": lambda: bench_extract(
            model, store, 32 if tiny else 256, 3 if tiny else 20, budget, device
        ),
        "fisher_batch": lambda: bench_fisher(model, store, fisher_samples, "batch", budget, device),
        "fisher_per_sample": lambda: bench_fisher(model, store, fisher_samples, "per_sample", budget, device),
        "decode": lambda: bench_decode(32 if tiny else 1024, 128, workers, image_size),
    }
    for name, run in sections.items():
        try:
            summary[name] = run()
        except (
            RuntimeError,
            CrossforgetError,
        ) as exc:  # report and go on: one failure must not cost the rest
            summary[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        print(name, summary[name], flush=True)
    if device.type == "cuda":
        summary["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    summary["total_seconds"] = time.perf_counter() - started
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
