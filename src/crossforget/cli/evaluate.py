"""``crossforget evaluate``: retrieval mAP of a checkpoint under a forget request."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import add_device_options, add_request_options, device_settings
from crossforget.core import distributed
from crossforget.core.io import check_writable, guard_output
from crossforget.reporting.tables import print_table, write_results
from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs, evaluate_checkpoints, evaluation_rows

DESCRIPTION = "Evaluate hashing checkpoints under a forget request."


def register(parser: argparse.ArgumentParser) -> None:
    add_request_options(
        parser,
        checkpoint="a checkpoint folder, or a folder of bits<B> checkpoints (from train/unlearn)",
        forget="classes of the request",
    )
    parser.add_argument("--topk", type=int, default=None, help="mAP@k instead of mAP@all")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for evaluation.json/.csv/.md (default: the checkpoint folder)",
    )
    add_device_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.out is not None:  # evaluation.* beside the checkpoint (the default) never touch its files
        guard_output(args.out, [("--checkpoint", args.checkpoint)], allow_equal=True)
    out = args.out or args.checkpoint
    check_writable(
        out, "--out" if args.out else "--checkpoint folder (where results go without --out)", into=True
    )
    dirs = checkpoint_dirs(args.checkpoint)
    results = evaluate_checkpoints(dirs, args.forget, args.topk, **device_settings(args))
    columns, rows = evaluation_rows(results)
    title = f"Retrieval mAP (%) forgetting {', '.join(args.forget)}"
    print_table(title, columns, rows, Console())
    distributed.barrier()  # under torchrun: every rank done before rank 0 alone writes
    paths = write_results(Path(out), "evaluation", results, columns, rows, title)
    Console(stderr=True).print(f"results written to {paths['json']} (.csv, .md)")
    return 0
