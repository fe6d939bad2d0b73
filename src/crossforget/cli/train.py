"""``crossforget train``: train the Original model (or the Retrain reference with --exclude)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import add_dataset_options, dataset_spec, parse_options
from crossforget.errors import CrossforgetError
from crossforget.experiments.hashing_task import attach_full_fisher
from crossforget.experiments.training_run import load_data, train_hashing
from crossforget.io import atomic_directory, atomic_write_json
from crossforget.models.persist import save_hashing_checkpoint
from crossforget.training import TrainingRecipe


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train", help="train a hashing model, one checkpoint per bit length",
                                 description="Train the cross-modal hashing model with the DSPH loss.")
    add_dataset_options(parser)
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64], help="code lengths (default 16 32 64)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (one subfolder bits<B> per length)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="CLASS",
                        help="drop every training sample carrying these classes (the Retrain reference)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: recipe default)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="learning rate of encoders and heads")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order")
    parser.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                        help="model option, repeatable (cnn_width, feature_dim, embed_dim, dropout, image_size)")
    parser.add_argument("--store-fisher", action="store_true",
                        help="also store the full-data Fisher (lets SSD skip its pass over the training set)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.set_defaults(handler=run)


def recipe_from_args(args: argparse.Namespace) -> TrainingRecipe:
    recipe = TrainingRecipe()
    if args.epochs is not None:
        recipe.epochs = args.epochs
    if args.batch_size is not None:
        recipe.batch_size = args.batch_size
    if args.lr is not None:
        recipe.encoder_lr = recipe.head_lr = args.lr
    if recipe.epochs < 1 or recipe.batch_size < 1:
        raise CrossforgetError("--epochs and --batch-size must be at least 1")
    return recipe


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    spec = dataset_spec(args)
    recipe = recipe_from_args(args)
    model_options = parse_options(args.model_option)
    if any(b < 1 for b in args.bits):
        raise CrossforgetError("--bits must be positive integers, e.g. --bits 16 32 64")
    loaded = load_data(spec)
    summary = {"dataset": spec.to_dict(), "bits": args.bits, "excluded_classes": args.exclude, "runs": {}}
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        for bits in args.bits:
            checkpoint = train_hashing(loaded, bits, recipe, args.seed, args.exclude, model_options)
            if args.store_fisher:
                attach_full_fisher(checkpoint, loaded)
            save_hashing_checkpoint(tmp / f"bits{bits}", checkpoint)
            training = checkpoint.config["training"]
            summary["runs"][str(bits)] = {"seconds": training["seconds"], "final_loss": training["loss_history"][-1]}
            console.print(f"[green]trained[/] {bits} bits in {training['seconds']:.1f} s "
                          f"(final loss {training['loss_history'][-1]:.4f})")
        atomic_write_json(tmp / "train_summary.json", summary)
    console.print(f"checkpoints written to {args.out}")
    return 0
