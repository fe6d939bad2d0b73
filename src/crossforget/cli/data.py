"""``crossforget data``: look at a dataset (preview grid, label statistics)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console

from crossforget.cli.common import add_action, add_actions, add_dataset_options, data_inputs, dataset_spec
from crossforget.core.io import check_writable, guard_output
from crossforget.data.registry import load_dataset
from crossforget.reporting.tables import print_table


def register(parser: argparse.ArgumentParser) -> None:
    actions = add_actions(parser)
    preview = add_action(
        actions, "preview", run_preview, help="write a PNG grid of samples with captions and labels"
    )
    add_dataset_options(preview)
    preview.add_argument("--out", type=Path, required=True, help="PNG file to write")
    preview.add_argument("--count", type=int, default=16, help="number of samples (default 16)")
    preview.add_argument("--seed", type=int, default=0, help="which samples to show")
    info = add_action(actions, "info", run_info, help="print sizes, split and label frequencies")
    add_dataset_options(info)


def run_preview(args: argparse.Namespace) -> int:
    from crossforget.data.preview import write_preview

    guard_output(args.out, data_inputs(args))
    check_writable(args.out, kind="file")
    data, _ = load_dataset(dataset_spec(args))
    path = write_preview(data, args.out, count=args.count, seed=args.seed)
    Console(stderr=True).print(f"preview written to {path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    spec = dataset_spec(args)
    data, split = load_dataset(spec)
    console = Console()
    labels = data.labels.astype(np.float64)
    console.print(
        f"[bold]{data.name}[/]: {len(data)} items, {data.num_classes} classes, "
        f"{labels.sum(1).mean():.2f} labels per item; split {split.to_dict()}"
    )
    order = np.argsort(-labels.mean(0))
    rows = [
        [
            data.class_names[i],
            int(labels[:, i].sum()),
            100 * labels[:, i].mean(),
            int(labels[split.train, i].sum()),
        ]
        for i in order
    ]
    print_table("label frequencies", ["class", "items", "% of items", "in train split"], rows, console)
    return 0
