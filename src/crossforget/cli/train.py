"""``crossforget train``: train the Original model (or the Retrain reference with --exclude)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli import COMMAND_HELP
from crossforget.cli.common import (
    add_backbone_options,
    add_dataset_options,
    add_device_options,
    data_inputs,
    dataset_spec,
    device_settings,
    features_dataset,
    finite_float,
    model_options,
)
from crossforget.core import distributed
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory, atomic_write_json, guard_output, prepare_output_dir
from crossforget.engine.training import TrainingRecipe, recipe_for
from crossforget.tasks.hashing.checkpoint import save_hashing_checkpoint
from crossforget.tasks.hashing.task import attach_full_fisher
from crossforget.tasks.hashing.training import load_data, train_hashing


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help=COMMAND_HELP["train"],
        description="Train the cross-modal hashing model with the DSPH loss.",
    )
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
    parser.set_defaults(handler=run)


def add_learning_rate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lr", type=finite_float, default=None, help="learning rate of encoders and heads")
    parser.add_argument(
        "--encoder-lr",
        type=finite_float,
        default=None,
        help="learning rate of the encoders (default: small 2e-3, CLIP 1e-5)",
    )
    parser.add_argument(
        "--head-lr",
        type=finite_float,
        default=None,
        help="learning rate of the hash heads (default: small 2e-3, CLIP 1e-3)",
    )


def recipe_from_args(args: argparse.Namespace) -> TrainingRecipe:
    """The backbone's default recipe (DSPH's for CLIP), then the flags; --encoder-lr/--head-lr beat --lr."""
    recipe = recipe_for(args.backbone)
    if args.epochs is not None:
        recipe.epochs = args.epochs
    if args.batch_size is not None:
        recipe.batch_size = args.batch_size
    if args.lr is not None:
        recipe.encoder_lr = recipe.head_lr = args.lr
    if args.encoder_lr is not None:
        recipe.encoder_lr = args.encoder_lr
    if args.head_lr is not None:
        recipe.head_lr = args.head_lr
    if recipe.epochs < 1 or recipe.batch_size < 1:
        raise CrossforgetError("--epochs and --batch-size must be at least 1")
    if min(recipe.encoder_lr, recipe.head_lr) <= 0:
        raise CrossforgetError("learning rates must be positive")
    return recipe


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
