"""``crossforget report``: one Markdown and HTML report from result folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.core.io import atomic_directory, guard_output, prepare_output_dir
from crossforget.reporting.report import build_report, find_results, write_report
from crossforget.tasks.hashing.columns import column_label

DESCRIPTION = (
    "Finds results.json (demo, table1, sweeps), best.json (tune) and density-plot JSON under "
    "the folders and writes report.md, report.html and figures/ (no external assets)."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="folders searched recursively")
    parser.add_argument("--out", type=Path, default=Path("report"), help="report folder (default report/)")
    parser.add_argument("--title", default="crossforget results", help="report title")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty report folder")


def run(args: argparse.Namespace) -> int:
    # A report folder inside a searched folder is fine: the search skips it.
    guard_output(args.out, [("folder", folder) for folder in args.folders], allow_inside=True)
    prepare_output_dir(args.out, args.overwrite)
    found = find_results(args.folders, exclude=args.out)
    blocks, images = build_report(found, args.title, column_label)
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        write_report(tmp, blocks, images, args.title)
    Console(stderr=True).print(
        f"{len(found)} result(s), {len(images)} figure(s): {args.out / 'report.md'}, "
        f"{args.out / 'report.html'}"
    )
    return 0
