"""``crossforget unlearn``: honour a forget request on a trained checkpoint with one method."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import (
    add_device_options,
    add_method_options,
    add_request_options,
    device_settings,
    method_settings,
)
from crossforget.core.io import atomic_directory, atomic_write_json, guard_output, prepare_output_dir
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest
from crossforget.reporting.tables import print_table, write_results
from crossforget.tasks.hashing import evaluation_run
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint, save_hashing_checkpoint
from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs, evaluation_rows
from crossforget.tasks.hashing.task import run_method
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method

DESCRIPTION = "Run one unlearning method; the input checkpoint is never modified."


def register(parser: argparse.ArgumentParser) -> None:
    add_request_options(
        parser,
        checkpoint="a checkpoint folder or a folder of bits<B> checkpoints (all are processed)",
        forget="classes to forget",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder for the new checkpoint(s)")
    add_method_options(parser)
    parser.add_argument(
        "--evaluate", action="store_true", help="also evaluate the new model(s) and print mAP"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_device_options(parser)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    dirs = checkpoint_dirs(args.checkpoint)
    guard_output(args.out, [("--checkpoint", args.checkpoint), ("--params", args.params)])
    prepare_output_dir(args.out, args.overwrite)
    request = ForgetRequest(args.forget)
    method = create_method(args.method, **method_settings(args))
    settings = device_settings(args)
    report = {
        "method": args.method,
        "forget": list(request.classes),
        "seed": args.seed,
        "checkpoint": str(args.checkpoint),
        "runs": {},
        "environment": environment_stamp(),
    }
    loaded = None
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        for directory in dirs:
            saved = load_hashing_checkpoint(directory, settings["device"])
            if loaded is None or loaded.spec != saved.dataset_spec:
                loaded = load_data(saved.dataset_spec, **settings)
            loaded.check(saved.config, directory)
            new, result = run_method(method, saved, loaded, request, args.seed)
            target = tmp / directory.name if len(dirs) > 1 else tmp
            save_hashing_checkpoint(target, new)
            report["runs"][str(saved.bits)] = {"timings": result.timings, "diagnostics": result.diagnostics}
            console.print(
                f"[green]{args.method}[/] {saved.bits} bits: {result.timings['total']:.2f} s "
                + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items() if k != "total")
            )
            guard = result.diagnostics.get("guard", {})
            if "acted_on" in guard:
                console.print(f"  {guard_summary(guard)}")
        atomic_write_json(tmp / "unlearn.json", report)
        if args.evaluate:  # inside the block: a failed evaluation leaves no checkpoint behind either
            results = evaluation_run.evaluate_checkpoints(checkpoint_dirs(tmp), args.forget, **settings)
            results["checkpoints"] = [
                str(args.out / Path(d).relative_to(tmp)) for d in results["checkpoints"]
            ]
            columns, rows = evaluation_rows(results)
            title = f"{args.method}: retrieval mAP (%) after forgetting {', '.join(request.classes)}"
            print_table(title, columns, rows, Console())
            write_results(tmp, "evaluation", results, columns, rows, title)
    console.print(f"unlearned checkpoint(s) written to {args.out}")
    return 0


def guard_summary(guard: dict) -> str:
    """One line for the forgetting guard's outcome (per-class thresholds when it refined per class)."""
    alphas = guard.get("alphas")
    where = (
        "per-class alphas " + ", ".join(f"{a:.4g}" for a in alphas)
        if alphas
        else f"alpha {guard['alpha']:.4g}"
    )
    return (
        f"forgetting guard: {where} after {len(guard['steps'])} probe step(s), acted on "
        f"{guard['acted_on']}, {'met' if guard['met'] else 'NOT met'}"
    )
