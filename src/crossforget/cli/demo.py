"""``crossforget demo``: the paper's Table 2 on the built-in data (what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import (
    add_backbone_options,
    add_dataset_options,
    add_device_options,
    add_forget_option,
    add_learning_rate_options,
    add_params_files,
    data_inputs,
    dataset_spec,
    device_settings,
    features_dataset,
    model_options,
    params_files,
    recipe_from_args,
)
from crossforget.core.io import atomic_directory, guard_output, prepare_output_dir
from crossforget.experiments.table2 import Table2Config, run_table2, write_table2
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import method_names

DESCRIPTION = (
    "Train (or load cached) references, run every method, print and "
    "save the paper's Table 2 layout with |Delta| rows."
)


def register(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser)
    add_backbone_options(parser)
    add_device_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    add_forget_option(parser, help="classes to forget (dog)", default=["dog"])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds of the sampled methods (SSD, PPP): different forget/retain samples",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["original", "bad_model", "retrain", "finetune", "ssd", "ppp"],
        help="columns: original and any of " + ", ".join(method_names()),
    )
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/cache"), help="cache of trained Original/Retrain"
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of Original/Retrain")
    parser.add_argument("--batch-size", type=int, default=None)
    add_learning_rate_options(parser)
    add_params_files(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty results folder")


def run(args: argparse.Namespace) -> int:
    inputs = [("--cache", args.cache), ("--ppp-params", args.ppp_params), ("--ssd-params", args.ssd_params)]
    guard_output(args.out, data_inputs(args) + inputs)
    prepare_output_dir(args.out, args.overwrite)
    console = Console(stderr=True)
    method_options = params_files(args)
    config = Table2Config(
        forget=args.forget,
        bits=args.bits,
        seeds=args.seeds,
        methods=args.methods,
        recipe=recipe_from_args(args),
        model_options=model_options(args),
        method_options=method_options,
    )
    loaded = load_data(dataset_spec(args, features_dataset(args)), **device_settings(args))
    results = run_table2(loaded, config, args.cache, console)
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        write_table2(tmp, results, Console())
    console.print(
        f"results written to {args.out} (results.json, .csv, .md, results_any_label.md, results.png)"
    )
    return 0
