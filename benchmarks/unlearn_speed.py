"""Wall time of PPP and SSD against Retrain on one hashing model, and the cost of the exact per-sample Fisher.

All timings come from one process, on the same loaded data, device and thread count:

- Retrain: ``create_method("retrain")``, the Original's training recipe on train minus D_f;
- PPP with the checkpoint's stored prototypes (the default path);
- SSD computing its full-training-set Fisher, and SSD reading a stored one (``attach_full_fisher``,
  a training-time cost reported on its own line, not charged to SSD);

each end to end as ``crossforget unlearn`` runs it once the data are loaded (``run_method``: task set-up
plus the method), without evaluation. The speed-ups use median wall times. Then the Fisher cost: the
``per_sample`` estimator (hook path on the Linear hash heads) against ``batch`` over the same
pre-made batches, on the heads and, for information, on every parameter (the CNN goes through vmap).
Usage:

    .venv/bin/python benchmarks/unlearn_speed.py                    # default recipe, Original from runs/cache
    .venv/bin/python benchmarks/unlearn_speed.py --epochs 3 --data-option num_items=3000 --num-train 2000
    .venv/bin/python benchmarks/unlearn_speed.py --checkpoint runs/original --bits 32 --json speed.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: the machine is shared

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from crossforget.cli.common import (  # noqa: E402
    add_dataset_options,
    add_device_options,
    dataset_spec,
    device_settings,
)
from crossforget.core.checkpoint import CONFIG  # noqa: E402
from crossforget.core.errors import CrossforgetError  # noqa: E402
from crossforget.core.io import atomic_write_json  # noqa: E402
from crossforget.core.reproducibility import environment_stamp  # noqa: E402
from crossforget.data.forget import ForgetRequest  # noqa: E402
from crossforget.engine.training import recipe_for  # noqa: E402
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint, load_hashing_checkpoint  # noqa: E402
from crossforget.tasks.hashing.reference import trained_reference  # noqa: E402
from crossforget.tasks.hashing.task import attach_full_fisher, hashing_task, run_method  # noqa: E402
from crossforget.tasks.hashing.training import LoadedData, load_data  # noqa: E402
from crossforget.unlearning.fisher import counting_fallbacks, diagonal_fisher  # noqa: E402
from crossforget.unlearning.methods import create_method  # noqa: E402
from crossforget.unlearning.methods.base import sample_indices  # noqa: E402

# The targets: Retrain/method speed-ups (at least), per_sample/batch Fisher on the heads (at most).
SPEEDUP_TARGETS = {"ppp": 50.0, "ssd_computed": 10.0, "ssd_stored": 200.0}
HEAD_FISHER_TARGET = 2.0
LABELS = {
    "retrain": "Retrain",
    "ppp": "PPP",
    "ssd_computed": "SSD (computed Fisher)",
    "ssd_stored": "SSD (stored Fisher)",
}
FISHER_BATCH = 32  # PPP's and SSD's batch size


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="an existing checkpoint, or a folder of bits<B> checkpoints (default: train or "
        "load the Original from --cache with the default recipe)",
    )
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"), help="cache of trained Originals")
    parser.add_argument(
        "--bits", type=int, default=32, help="code length (the bits<B> subfolder of --checkpoint)"
    )
    parser.add_argument(
        "--forget", nargs="+", default=["dog"], metavar="CLASS", help="classes to forget (dog)"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the Original's recipe (and so of Retrain); not with --checkpoint",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed and the methods' sampling seed")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs of PPP, SSD and each Fisher estimator (median reported)",
    )
    parser.add_argument("--retrain-repeat", type=int, default=1, help="timed runs of Retrain (minutes each)")
    parser.add_argument(
        "--fisher-samples",
        type=int,
        default=800,
        help="training samples of the Fisher comparison (800: PPP's largest pass)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the numbers here")
    add_dataset_options(parser)
    add_device_options(parser)
    args = parser.parse_args(argv)
    if min(args.repeat, args.retrain_repeat, args.fisher_samples, args.bits) < 1:
        raise CrossforgetError("--repeat, --retrain-repeat, --fisher-samples and --bits must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise CrossforgetError("--threads must be at least 1")
    if args.epochs is not None and args.epochs < 1:
        raise CrossforgetError("--epochs must be at least 1")
    data_flags = (args.dataset, args.data_root, args.data_option, args.num_query, args.num_train)
    if args.checkpoint is not None and (args.epochs is not None or any(f is not None for f in data_flags)):
        raise CrossforgetError(
            "--epochs and the data flags describe the Original trained here; a --checkpoint "
            "brings its own recipe and data, so drop them (or drop --checkpoint)"
        )
    return args


def synchronise(device: torch.device) -> None:
    """Wait for queued GPU work, so wall times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    synchronise(device)
    start = time.perf_counter()
    value = fn()
    synchronise(device)
    return time.perf_counter() - start, value


def original_checkpoint(
    args: argparse.Namespace, settings: dict
) -> tuple[HashingCheckpoint, LoadedData, str]:
    """The Original to unlearn from, its loaded data and where it came from."""
    if args.checkpoint is not None:
        folder = (
            args.checkpoint if (args.checkpoint / CONFIG).is_file() else args.checkpoint / f"bits{args.bits}"
        )
        if not (folder / CONFIG).is_file():
            raise CrossforgetError(
                f"{args.checkpoint} is neither a checkpoint nor holds bits{args.bits}/; "
                "point --checkpoint at the output of `crossforget train` (or change --bits)"
            )
        saved = load_hashing_checkpoint(folder, settings["device"])
        return saved, load_data(saved.dataset_spec, **settings), f"checkpoint {folder}"
    recipe = recipe_for("small")
    if args.epochs is not None:
        recipe.epochs = args.epochs
    loaded = load_data(dataset_spec(args), **settings)
    saved, cached = trained_reference(args.cache, loaded, args.bits, recipe, args.seed)
    return saved, loaded, f"{'loaded from' if cached else 'trained into'} cache {args.cache}"


def warm_store(saved: HashingCheckpoint, loaded: LoadedData, request: ForgetRequest) -> None:
    """Make every training batch once, so no method pays for first-time image decoding."""
    task = hashing_task(saved, loaded, request)
    for _ in task.batches(task.train_all, 256):
        pass


def median_stages(timings: list[dict[str, float]]) -> dict[str, float]:
    return {stage: statistics.median(t[stage] for t in timings) for stage in timings[0]}


def time_methods(
    saved: HashingCheckpoint,
    loaded: LoadedData,
    request: ForgetRequest,
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, dict]:
    """Warm up the fast methods, then time them round-robin (so load drift hits all alike), then Retrain."""
    methods = {
        "ppp": create_method("ppp"),
        "ssd_computed": create_method("ssd", use_stored_fisher=False),
        "ssd_stored": create_method("ssd", use_stored_fisher=True),
    }
    for method in methods.values():
        run_method(method, saved, loaded, request, args.seed)
    runs: dict[str, dict] = {name: {"wall_seconds": [], "timings": []} for name in ("retrain", *methods)}
    for _ in range(args.repeat):
        for name, method in methods.items():
            seconds, (_, result) = timed(
                lambda m=method: run_method(m, saved, loaded, request, args.seed), device
            )
            runs[name]["wall_seconds"].append(seconds)
            runs[name]["timings"].append(result.timings)
            runs[name]["diagnostics"] = {
                k: v for k, v in result.diagnostics.items() if not k.endswith("per_tensor")
            }
    retrain = create_method("retrain")
    for _ in range(args.retrain_repeat):
        seconds, (_, result) = timed(lambda: run_method(retrain, saved, loaded, request, args.seed), device)
        runs["retrain"]["wall_seconds"].append(seconds)
        runs["retrain"]["timings"].append(result.timings)
        runs["retrain"]["diagnostics"] = result.diagnostics
    for run in runs.values():
        run["median_seconds"] = statistics.median(run["wall_seconds"])
        run["median_stages"] = median_stages(run["timings"])
    return runs


def fisher_ratio(
    saved: HashingCheckpoint,
    loaded: LoadedData,
    request: ForgetRequest,
    names: list[str] | None,
    args: argparse.Namespace,
    device: torch.device,
) -> dict:
    """Median per_sample and batch Fisher times over the same pre-made batches of training samples."""
    task = hashing_task(saved, loaded, request)
    indices = sample_indices(task.train_all, args.fisher_samples, args.seed, "Fisher")
    batches = list(task.batches(indices, FISHER_BATCH))
    with counting_fallbacks() as counter:
        seconds: dict[str, list[float]] = {"batch": [], "per_sample": []}
        warm = batches[:2]
        for estimator in seconds:  # warm-up (and, for per_sample, which layers took the vmap path)
            counter.count = 0
            diagonal_fisher(saved.model, task.loss, warm, estimator=estimator, parameters=names)
        generic_layers = counter.count // len(warm)
        for _ in range(args.repeat):
            for estimator, times in seconds.items():
                times.append(
                    timed(
                        lambda e=estimator: diagonal_fisher(
                            saved.model, task.loss, batches, estimator=e, parameters=names
                        ),
                        device,
                    )[0]
                )
    batch_s, sample_s = statistics.median(seconds["batch"]), statistics.median(seconds["per_sample"])
    return {
        "samples": int(indices.size),
        "batch_size": FISHER_BATCH,
        "parameters": names or "all",
        "wall_seconds": seconds,
        "batch_seconds": batch_s,
        "per_sample_seconds": sample_s,
        "ratio": sample_s / batch_s,
        "generic_path_layers_per_batch": generic_layers,
    }


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def report(results: dict) -> None:
    d = results["setup"]
    print(
        f"data: {d['dataset']} {d['dataset_options']}, {d['train']} train (D_f {d['train_forget']}, retain "
        f"{d['train_retain']}); forget {', '.join(d['forget'])}; {d['bits']} bits"
    )
    print(
        f"device {d['device']}, {d['threads']} torch threads; Original {d['original']}, recipe "
        f"{d['epochs']} epochs; prototypes {d['prototypes']}"
    )
    print(f"stored full-data Fisher: {d['stored_fisher']} (training-time cost, not charged to SSD)")
    print(
        f"end to end (run_method, no evaluation), median of {d['repeat']} (Retrain: {d['retrain_repeat']}):"
    )
    for name, run in results["methods"].items():
        stages = ", ".join(f"{k} {v:.3f}" for k, v in run["median_stages"].items() if k != "total")
        print(f"  {LABELS[name]:22s} {run['median_seconds']:10.3f} s   stages (s): {stages}")
    for name, target in SPEEDUP_TARGETS.items():
        ratio = results["speedups"][name]
        passed = verdict(ratio >= target)
        print(f"speed-up Retrain/{LABELS[name]}: {ratio:.1f}x (target >= {target:g}x) {passed}")
    for key, label in (("heads", "hash heads"), ("all", "all parameters, for information")):
        f = results["fisher"][key]
        line = (
            f"Fisher per_sample/batch on {label} ({f['samples']} samples, batches of {f['batch_size']}): "
            f"batch {f['batch_seconds']:.3f} s, per_sample {f['per_sample_seconds']:.3f} s, "
            f"ratio {f['ratio']:.2f}x"
        )
        if key == "heads":
            line += (
                f" (target <= {HEAD_FISHER_TARGET:g}x) {verdict(f['ratio'] <= HEAD_FISHER_TARGET)}; "
                f"layers on the vmap path: {f['generic_path_layers_per_batch']}"
            )
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = device_settings(args)
    device = settings["device"]
    request = ForgetRequest(args.forget)
    saved, loaded, origin = original_checkpoint(args, settings)
    had_prototypes = bool(saved.prototypes)
    warm_store(saved, loaded, request)
    if saved.fisher and saved.config.get("stored_fisher", {}).get("estimator") == "batch":
        stored_fisher = "from the checkpoint"
    else:
        seconds, _ = timed(lambda: attach_full_fisher(saved, loaded), device)
        stored_fisher = f"computed here once in {seconds:.3f} s"
    methods = time_methods(saved, loaded, request, args, device)
    heads = [n for n, _ in saved.model.named_parameters() if n.startswith(("image_head.", "text_head."))]
    task = hashing_task(saved, loaded, request)
    results = {
        "setup": {
            "dataset": loaded.spec.name,
            "dataset_options": loaded.spec.options,
            "bits": saved.bits,
            "forget": list(request.classes),
            "train": int(task.train_all.size),
            "train_forget": int(task.train_forget.size),
            "train_retain": int(task.train_retain.size),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "original": origin,
            "epochs": task.training_epochs,
            "prototypes": "stored" if had_prototypes else "computed by PPP",
            "stored_fisher": stored_fisher,
            "repeat": args.repeat,
            "retrain_repeat": args.retrain_repeat,
            "seed": args.seed,
            "dataset_spec": loaded.spec.to_dict(),
        },
        "methods": methods,
        "speedups": {
            name: methods["retrain"]["median_seconds"] / methods[name]["median_seconds"]
            for name in SPEEDUP_TARGETS
        },
        "fisher": {
            "heads": fisher_ratio(saved, loaded, request, heads, args, device),
            "all": fisher_ratio(saved, loaded, request, None, args, device),
        },
    }
    results["targets"] = {
        **{
            f"retrain_over_{name}": {
                "value": results["speedups"][name],
                "at_least": target,
                "passed": results["speedups"][name] >= target,
            }
            for name, target in SPEEDUP_TARGETS.items()
        },
        "fisher_heads_per_sample_over_batch": {
            "value": results["fisher"]["heads"]["ratio"],
            "at_most": HEAD_FISHER_TARGET,
            "passed": results["fisher"]["heads"]["ratio"] <= HEAD_FISHER_TARGET,
        },
    }
    results["environment"] = environment_stamp()
    report(results)
    if args.json is not None:
        atomic_write_json(args.json, results)
        print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
