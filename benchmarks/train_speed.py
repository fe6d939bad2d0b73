"""Items/s of one training epoch of the default small model on scenes, per stage, against the old code path.

The default ``small`` backbone at 32 bits on the built-in ``scenes`` data (48 px, the 5,000 training items
of ``crossforget train``), batch 128, the DSPH loss with learnable proxies, flips and shifts, one random
caption per item: what ``train_model`` runs. Two worker processes train the same initial model on the
same batches, one step each in turn (so that other jobs on shared cores slow both alike):

- ``reference``: the code path before issue 15, kept here as a faithful copy: the store's normalised
  float batch, augmentation on the float batch (``augment_images``), AdamW's per-parameter loop, the
  per-tensor gradient-norm clip, and glibc's default allocator behaviour;
- ``current``: the library's ``iterate_batches`` and ``TrainingOptimisers``, with ``keep_freed_memory``
  applied, as ``train_model`` runs them.

Separate processes because the allocator setting is process-wide. Stages: data preparation (batching,
caption draw, augmentation, normalisation; captions are tokenised once when the store is built, in
both paths), forward (model and loss), backward (zero_grad and backward) and optimiser step (lr
schedule, clip, AdamW, the proxies' SGD). Wall seconds per stage give the speed-ups; CPU seconds (all
threads) are printed beside them, as they are less disturbed by other jobs. Usage:

    .venv/bin/python benchmarks/train_speed.py [--epochs 1] [--threads N] [--bits 32] [--json out.json]

The last line is ``overall: N.Nx`` (reference wall time / current wall time for the whole epoch).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: the machine is shared

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from crossforget.core.io import atomic_write_json  # noqa: E402

Batch = dict[str, torch.Tensor]
STAGES = ("data", "forward", "backward", "optimiser")
PATHS = ("reference", "current")
TARGET = 2.0  # overall speed-up, at least
PROTOCOL = "@@ "  # prefix of the workers' answers on stdout (anything else there is ignored)


# --- the reference: the old code path, copied --------------------------------------------------------


def reference_batches(
    store, indices: np.ndarray, batch_size: int, generator: torch.Generator
) -> Iterator[Batch]:
    """The old ``iterate_batches(shuffle, random_caption, augment)`` over the old ``TensorStore.batch``."""
    from crossforget.models.inputs import augment_images

    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    idx = idx[torch.randperm(idx.numel(), generator=generator)]
    for start in range(0, idx.numel(), batch_size):
        chunk = idx[start : start + batch_size]
        caption = (torch.rand(chunk.numel(), generator=generator) * store.num_captions[chunk]).long()
        images = store.pixels[chunk].permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        mean = torch.tensor(store.preprocessor.mean).view(1, 3, 1, 1)
        std = torch.tensor(store.preprocessor.std).view(1, 3, 1, 1)
        batch = {
            "images": (images - mean) / std,
            "text_ids": store.text_ids[chunk, caption],
            "text_mask": store.text_mask[chunk, caption],
            "labels": store.labels[chunk],
        }
        batch["images"] = augment_images(batch["images"], generator)
        yield batch


class ReferenceOptimisers:
    """The old optimiser code of ``train_model``: default AdamW (per-parameter loop on the CPU)."""

    def __init__(self, model: nn.Module, loss: nn.Module, recipe) -> None:
        from crossforget.engine.training import _parameter_groups

        self.model_module, self.grad_clip = model, recipe.grad_clip
        self.model = torch.optim.AdamW(
            _parameter_groups(model, recipe),
            betas=recipe.betas,
            eps=recipe.eps,
            weight_decay=recipe.weight_decay,
        )
        self.loss = torch.optim.SGD(
            [p for p in loss.parameters() if p.requires_grad],
            lr=recipe.proxy_lr,
            momentum=recipe.proxy_momentum,
            weight_decay=recipe.proxy_weight_decay,
        )

    def schedule(self, scale: float) -> None:
        for group in self.model.param_groups:
            group["lr"] = group["base_lr"] * scale

    def zero_grad(self) -> None:
        self.model.zero_grad(set_to_none=True)
        self.loss.zero_grad(set_to_none=True)

    def step(self) -> None:
        nn.utils.clip_grad_norm_(self.model_module.parameters(), self.grad_clip)
        self.model.step()
        self.loss.step()


# --- one worker: one path, stepped by the parent -----------------------------------------------------


def batch_digest(batch: Batch) -> str:
    """The batch's values (layout-independent), to check that both paths train on the same batches."""
    digest = hashlib.sha256()
    for key in sorted(batch):
        digest.update(batch[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class Worker:
    """One path's model, loss, optimisers and batches; ``step`` times each stage (wall and CPU)."""

    def __init__(self, path: str, args: argparse.Namespace) -> None:
        from crossforget.core.memory import keep_freed_memory
        from crossforget.data.registry import DatasetSpec
        from crossforget.engine.training import TrainingOptimisers, TrainingRecipe
        from crossforget.losses.dsph import DSPHLoss
        from crossforget.tasks.hashing.training import initial_model, load_data, model_config

        if args.threads:
            torch.set_num_threads(args.threads)
        if path == "current":
            keep_freed_memory()  # as train_model does
        items = args.items
        spec = (
            DatasetSpec("scenes")
            if items is None
            else DatasetSpec("scenes", {"num_items": items}, items // 5, items // 2)
        )
        loaded = load_data(spec)
        config = model_config(loaded.data, loaded.split, args.bits, {}, loaded.spec)
        torch.manual_seed(0)
        model, preprocessor = initial_model(config)
        self.store = loaded.store_for(preprocessor)
        loss = DSPHLoss(loaded.data.num_classes, args.bits)
        model.train()
        self.path, self.batch_size, self.epochs = path, args.batch_size, args.epochs
        self.recipe = TrainingRecipe(batch_size=args.batch_size, epochs=args.epochs)
        self.indices = loaded.split.train
        self.optimiser_class = ReferenceOptimisers if path == "reference" else TrainingOptimisers
        self.image_size = int(config["image_size"])
        # Warm-up (allocator, kernels) on a throw-away copy; the timed run starts from the same weights.
        spare_model, spare_loss = copy.deepcopy(model), copy.deepcopy(loss)
        spare = self.optimiser_class(spare_model, spare_loss, self.recipe)
        for batch in self.batches(self.indices[: 2 * self.batch_size], seed=99):
            value = spare_loss(spare_model, batch)
            spare.zero_grad()
            value.backward()
            spare.step()
        self.model, self.loss = model, loss
        self.optimisers = self.optimiser_class(model, loss, self.recipe)
        steps_per_epoch = math.ceil(len(self.indices) / self.batch_size)
        self.total = steps_per_epoch * self.epochs
        self.warmup = int(self.recipe.warmup_fraction * self.total)
        self.step_index = 0
        self.stream = (b for epoch in range(self.epochs) for b in self.batches(self.indices, seed=epoch))

    def batches(self, indices: np.ndarray, seed: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(seed)
        if self.path == "reference":
            return reference_batches(self.store, indices, self.batch_size, generator)
        from crossforget.models.inputs import iterate_batches

        return iterate_batches(
            self.store,
            indices,
            self.batch_size,
            shuffle=True,
            generator=generator,
            random_caption=True,
            augment=True,
        )

    def step(self) -> dict | None:
        """One training step with each stage timed; None when every epoch's batches are used up."""
        from crossforget.engine.training import warmup_cosine

        marks = [_clock()]
        batch = next(self.stream, None)
        if batch is None:
            return None
        marks.append(_clock())
        value = self.loss(self.model, batch)
        marks.append(_clock())
        self.optimisers.zero_grad()
        value.backward()
        marks.append(_clock())
        self.optimisers.schedule(warmup_cosine(self.step_index, self.total, self.warmup))
        self.optimisers.step()
        loss = float(value.detach())
        marks.append(_clock())
        self.step_index += 1
        pairs = list(zip(marks[:-1], marks[1:], strict=True))
        return {
            "wall": {s: b[0] - a[0] for s, (a, b) in zip(STAGES, pairs, strict=True)},
            "cpu": {s: b[1] - a[1] for s, (a, b) in zip(STAGES, pairs, strict=True)},
            "items": int(batch["labels"].shape[0]),
            "digest": batch_digest(batch),
            "loss": loss,
        }


def _answer(message: dict) -> None:
    sys.stdout.write(PROTOCOL + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(path: str, args: argparse.Namespace) -> int:
    """Worker loop: one step per ``step`` line on stdin, one JSON answer per step on stdout."""
    worker = Worker(path, args)
    _answer({"ready": True, "image_size": worker.image_size, "train_items": int(len(worker.indices))})
    for line in sys.stdin:
        if line.strip() != "step":
            break
        result = worker.step()
        _answer(result if result is not None else {"done": True})
    return 0


# --- the parent: both workers in lockstep ------------------------------------------------------------


class WorkerProcess:
    def __init__(self, path: str, argv: Sequence[str]) -> None:
        self.path = path
        command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", path]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL) :])
        raise RuntimeError(f"the {self.path} worker stopped (exit status {self.process.wait()})")

    def ask(self, command: str) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run(argv: Sequence[str]) -> dict:
    """Both paths, a step each in turn, until the epochs are done; per-stage sums and checks."""
    workers = {path: WorkerProcess(path, argv) for path in PATHS}
    try:
        setup = {path: worker.read() for path, worker in workers.items()}
        totals = {
            path: {"wall": dict.fromkeys(STAGES, 0.0), "cpu": dict.fromkeys(STAGES, 0.0)} for path in PATHS
        }
        items = dict.fromkeys(PATHS, 0)
        losses: dict[str, list[float]] = {path: [] for path in PATHS}
        same_batches, steps = True, 0
        while True:
            answers = {path: worker.ask("step") for path, worker in workers.items()}
            if any(a.get("done") for a in answers.values()):
                same_batches &= all(a.get("done") for a in answers.values())
                break
            same_batches &= answers["reference"]["digest"] == answers["current"]["digest"]
            for path, answer in answers.items():
                for clock in ("wall", "cpu"):
                    for stage in STAGES:
                        totals[path][clock][stage] += answer[clock][stage]
                items[path] += answer["items"]
                losses[path].append(answer["loss"])
            steps += 1
    finally:
        for worker in workers.values():
            worker.close()
    return {
        "setup": setup["current"],
        "totals": totals,
        "items": items,
        "steps": steps,
        "same_batches": bool(same_batches) and setup["reference"] == setup["current"],
        "losses": losses,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per path (default 1)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's, one per core)"
    )
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--items", type=int, default=None, help="scenes items (default: the 10,000 of `train`)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--worker", choices=PATHS, default=None, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.worker is not None:
        sys.exit(serve(args.worker, args))
    passed_on = ["--epochs", str(args.epochs), "--bits", str(args.bits), "--batch-size", str(args.batch_size)]
    passed_on += ["--threads", str(args.threads)] if args.threads else []
    passed_on += ["--items", str(args.items)] if args.items else []

    result = run(passed_on)
    wall = {path: result["totals"][path]["wall"] for path in PATHS}
    cpu = {path: result["totals"][path]["cpu"] for path in PATHS}
    speedups = {stage: wall["reference"][stage] / max(wall["current"][stage], 1e-12) for stage in STAGES}
    epoch = {path: sum(wall[path].values()) for path in PATHS}
    cpu_epoch = {path: sum(cpu[path].values()) for path in PATHS}
    overall = epoch["reference"] / epoch["current"]
    losses = result["losses"]
    summary = {
        "epochs": args.epochs,
        "bits": args.bits,
        "batch_size": args.batch_size,
        "image_size": result["setup"]["image_size"],
        "train_items": result["setup"]["train_items"],
        "steps": result["steps"],
        "threads": args.threads or torch.get_num_threads(),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "items_per_second": {path: result["items"][path] / epoch[path] for path in PATHS},
        "speedup": {**speedups, "overall": overall},
        "cpu_speedup": cpu_epoch["reference"] / cpu_epoch["current"],
        "target": TARGET,
        "passed": overall >= TARGET,
        "same_batches": result["same_batches"],
        "first_loss": {path: losses[path][0] for path in PATHS},
        "last_loss": {path: losses[path][-1] for path in PATHS},
    }
    print(
        f"small model on scenes, {args.bits} bits, {summary['image_size']} px, batch {args.batch_size}, "
        f"{summary['train_items']} training items x {args.epochs} epoch(s) per path, "
        f"threads={summary['threads']}, one step of each path in turn"
    )
    header = f"{'stage':10s} {'reference':>10s} {'current':>10s} {'speed-up':>9s}"
    print(f"{header}   {'CPU s: ref':>10s} {'current':>8s}")
    for stage in (*STAGES, "epoch"):
        old = epoch["reference"] if stage == "epoch" else wall["reference"][stage]
        new = epoch["current"] if stage == "epoch" else wall["current"][stage]
        old_cpu = cpu_epoch["reference"] if stage == "epoch" else cpu["reference"][stage]
        new_cpu = cpu_epoch["current"] if stage == "epoch" else cpu["current"][stage]
        print(f"{stage:10s} {old:9.2f}s {new:9.2f}s {old / new:8.2f}x   {old_cpu:9.2f}s {new_cpu:7.2f}s")
    rates = summary["items_per_second"]
    print(f"items/s: reference {rates['reference']:.0f}, current {rates['current']:.0f}")
    print(
        f"same batches: {'yes' if summary['same_batches'] else 'NO'}; first loss "
        f"{summary['first_loss']['reference']:.6f} vs {summary['first_loss']['current']:.6f}, last "
        f"{summary['last_loss']['reference']:.4f} vs {summary['last_loss']['current']:.4f} "
        "(float rounding only)"
    )
    if args.json:
        atomic_write_json(args.json, summary)
    print(f"target >= {TARGET:g}x {'PASS' if summary['passed'] else 'MISS'}")
    print(f"overall: {overall:.1f}x")
    return summary


if __name__ == "__main__":
    main()
