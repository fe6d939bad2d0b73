"""``crossforget train``: train the Original model (or the Retrain reference with --exclude)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import (
    add_backbone_options,
    add_dataset_options,
    add_device_options,
    add_learning_rate_options,
    data_inputs,
    dataset_spec,
    device_settings,
    features_dataset,
    model_options,
    recipe_from_args,
)
from crossforget.core import distributed
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory, atomic_write_json, guard_output, prepare_output_dir
from crossforget.tasks.hashing.checkpoint import save_hashing_checkpoint
from crossforget.tasks.hashing.task import attach_full_fisher
from crossforget.tasks.hashing.training import load_data, train_hashing

DESCRIPTION = "Train the cross-modal hashing model with the DSPH loss."


def register(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser)
    add_backbone_options(parser)
    add_device_options(parser)
    parser.add_argument(
        "--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths (default 16 32 64)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (one subfolder bits<B> per length)"
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="drop every training sample carrying these classes (the Retrain reference)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: recipe default)")
    parser.add_argument("--batch-size", type=int, default=None)
    add_learning_rate_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order")
    parser.add_argument(
        "--store-fisher",
        action="store_true",
        help="also store the full-data Fisher (lets SSD skip its pass over the training set)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    guard_output(args.out, data_inputs(args))
    prepare_output_dir(args.out, args.overwrite)
    spec = dataset_spec(args, features_dataset(args))
    recipe = recipe_from_args(args)
    options = model_options(args)
    if any(b < 1 for b in args.bits):
        raise CrossforgetError("--bits must be positive integers, e.g. --bits 16 32 64")
    loaded = load_data(spec, **device_settings(args))
    summary = {
        "dataset": spec.to_dict(),
        "bits": args.bits,
        "excluded_classes": args.exclude,
        "world_size": distributed.world_size(),
        "batch_size": recipe.batch_size,
        "per_rank_batch_size": distributed.per_rank_batch_size(recipe.batch_size),
        "runs": {},
    }
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        for bits in args.bits:
            checkpoint = train_hashing(loaded, bits, recipe, args.seed, args.exclude, options)
            if args.store_fisher:
                attach_full_fisher(checkpoint, loaded)
            save_hashing_checkpoint(tmp / f"bits{bits}", checkpoint)
            training = checkpoint.config["training"]
            summary["runs"][str(bits)] = {
                "seconds": training["seconds"],
                "final_loss": training["loss_history"][-1],
                "grey_images": training["grey_images"],
            }
            if training["grey_images"]:
                console.print(
                    f"[yellow]warning:[/] {training['grey_images']} image(s) could not be decoded "
                    f"(truncated?) and were trained on as grey images, e.g. "
                    f"{', '.join(training['grey_image_examples'][:2])}"
                )
            console.print(
                f"[green]trained[/] {bits} bits in {training['seconds']:.1f} s "
                f"(final loss {training['loss_history'][-1]:.4f})"
            )
        atomic_write_json(tmp / "train_summary.json", summary)
    console.print(f"checkpoints written to {args.out}")
    return 0
