"""``crossforget table1``: the paper's Table 1 (classification) on built-in or folder data."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console

from crossforget.cli.common import add_forget_option, finite_float, method_options_from_args, parse_options
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory, guard_output, prepare_output_dir
from crossforget.data.registry import dataset_entries, dataset_entry, load_single_label
from crossforget.data.single_label.imagefolder import describe_skipped
from crossforget.experiments.table1 import METHODS, Table1Config, run_table1, write_table1
from crossforget.models.classifier import ARCHITECTURES, DEFAULT_IMAGE_SIZE
from crossforget.tasks.classification.recipe import ClassifierRecipe

DESCRIPTION = (
    "Train (or load cached) classifiers, run every method over seeds and write the paper's "
    "Table 1 (D_f Acc, D_r Acc, MIA; mean ± std) as JSON, CSV, Markdown and PNG."
)


def register(parser: argparse.ArgumentParser) -> None:
    _add_data_options(parser)
    _add_method_options(parser)
    _add_model_options(parser)
    _add_run_options(parser)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """Which single-label data set, where it lives and how it is split."""
    data = parser.add_argument_group("data")
    datasets = dataset_entries("single")
    data.add_argument(
        "--dataset",
        default="scenes-single",
        choices=[entry.name for entry in datasets],
        help=f"{', '.join(entry.label() for entry in datasets)} (default scenes-single)",
    )
    built_in = [entry.name for entry in datasets if "root" not in entry.options]
    data.add_argument(
        "--root", type=Path, default=None, help=f"data folder (all but {' and '.join(built_in)})"
    )
    data.add_argument(
        "--test-fraction",
        type=finite_float,
        default=None,
        help="seeded stratified test split when the data has no test split of its own (digits: 0.2)",
    )
    data.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help="loader option, repeatable (scenes-single: num_train, num_test, num_classes, seed; "
        "digits: split_seed; imagenet100: num_classes, images_per_class, synsets; "
        "deepfashion: min_images, per_class)",
    )


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    """The request, the output folder and the methods' columns, seeds and options."""
    add_forget_option(parser, help="classes to forget")
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default runs/table1-DATASET-CLASS)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds of the sample-based methods (default 0 1 2)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="columns (default: all eight)")
    parser.add_argument(
        "--method-option",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="method option, repeatable, e.g. ppp.alpha=30 or bad_teacher.lr=1e-3",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The classifier and the recipe of the Original and Retrain training."""
    model = parser.add_argument_group("model and training")
    model.add_argument("--arch", default="resnet-small", choices=sorted(ARCHITECTURES))
    model.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="local folder of pretrained ResNet weights (save_pretrained layout); never downloaded",
    )
    model.add_argument(
        "--image-size", type=int, default=None, help="input size (resnet-small 32, resnet-50 224)"
    )
    model.add_argument(
        "--epochs", type=int, default=None, help=f"epochs of Original/Retrain ({ClassifierRecipe.epochs})"
    )
    model.add_argument("--batch-size", type=int, default=None)
    model.add_argument(
        "--lr", type=finite_float, default=None, help="peak SGD learning rate of Original/Retrain"
    )
    model.add_argument("--train-seed", type=int, default=0, help="seed of the Original and Retrain training")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The shadow MIA, the cache of trained classifiers, threads and --overwrite."""
    parser.add_argument(
        "--no-shadow", action="store_true", help="skip the shadow-model MIA (saves its training)"
    )
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"), help="cache of trained classifiers")
    parser.add_argument("--no-cache", action="store_true", help="train everything afresh, store nothing")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine more threads often run slower)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty results folder")


def recipe_from_args(args: argparse.Namespace) -> ClassifierRecipe:
    values = {
        k: v
        for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
        if v is not None
    }
    return ClassifierRecipe(**values)


def data_options(args: argparse.Namespace) -> dict:
    """The loader's options from the flags; what a loader takes (root, include, ...) decides which apply.

    Built-in data (no ``root`` option) is made at the model's input size; loaders that sample classes
    (an ``include`` option) are told to keep the forget classes.
    """
    takes = dataset_entry(args.dataset, "single").options
    options = parse_options(args.data_option)
    if "root" not in takes:
        if args.root is not None:
            raise CrossforgetError(
                f"{args.dataset} is built in; drop --root (or choose --dataset imagefolder)"
            )
        if "image_size" in takes:
            options.setdefault("image_size", args.image_size or DEFAULT_IMAGE_SIZE[args.arch])
    else:
        if args.root is None:
            raise CrossforgetError(f"--dataset {args.dataset} needs --root DIR pointing at the data")
        options["root"] = args.root
    if args.test_fraction is not None:
        if "test_fraction" not in takes:
            raise CrossforgetError(f"{args.dataset} has its own test images; drop --test-fraction")
        options["test_fraction"] = args.test_fraction
    if "include" in takes:
        options.setdefault("include", list(args.forget))
    return options


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise CrossforgetError("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / f"table1-{args.dataset}-{'-'.join(args.forget).replace(' ', '_')}"
    inputs = [("--root", args.root), ("--pretrained", args.pretrained)]
    guard_output(out, inputs + ([] if args.no_cache else [("--cache", args.cache)]))
    prepare_output_dir(out, args.overwrite)
    method_options = method_options_from_args(args.method_option)
    recipe = recipe_from_args(args)
    console = Console(stderr=True)
    data = load_single_label(args.dataset, **data_options(args))
    note = describe_skipped(data.info["skipped"]) if "skipped" in data.info else None
    if note:
        console.print(f"[yellow]skipped while loading:[/] {note}")
    summary = data.summary()
    console.print(
        f"{data.name}: {summary['classes']} classes, {summary['train']} train / {summary['test']} test "
        f"images ({data.info.get('split')})"
    )
    config = Table1Config(
        forget=args.forget,
        seeds=args.seeds,
        methods=args.methods,
        architecture=args.arch,
        image_size=args.image_size,
        pretrained=str(args.pretrained) if args.pretrained else None,
        recipe=recipe,
        training_seed=args.train_seed,
        method_options=method_options,
        shadow=not args.no_shadow,
    )
    results = run_table1(data, config, None if args.no_cache else args.cache, console)
    with atomic_directory(out, overwrite=args.overwrite) as tmp:
        write_table1(tmp, results, Console())
    console.print(
        f"results written to {out} (results.json, results.csv, results.md, results.png); "
        f"{results['run_timings']['total']:.0f} s in all"
    )
    return 0
