"""``crossforget tune``: Optuna search of PPP or SSD hyperparameters on a validation split."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import add_device_options, add_request_options, device_settings, parse_options
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory, guard_output, prepare_output_dir
from crossforget.data.validation import DEFAULT_SIZE
from crossforget.experiments.tuning import (
    TuningRequest,
    earlier_result_of,
    open_storage,
    study_name_for,
    tune,
    write_tuning,
)
from crossforget.tasks.hashing.columns import open_checkpoints
from crossforget.unlearning.methods import method_info, tunable_methods


def _description() -> str:
    """The search spaces are the methods' own declarations, read when the parser is made."""
    spaces = "; ".join(
        f"{m}: "
        + ", ".join(f"{k} {d.kind} [{d.low:g}, {d.high:g}]" for k, d in method_info(m).search_space.items())
        for m in tunable_methods()
    )
    return (
        "Minimise |Delta| D_f (to Retrain) + |Delta| D_r (to Original) on held-out database "
        f"items (never the query set). Search spaces: {spaces}. Resumable; workers may share --storage."
    )


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = _description()
    parser.add_argument("--method", required=True, choices=sorted(tunable_methods()))
    add_request_options(
        parser,
        checkpoint="Original checkpoint folder (bits<B>/)",
        forget="classes to forget (dog)",
        default=["dog"],
    )
    parser.add_argument("--trials", type=int, default=50, help="finished trials the study should hold (50)")
    parser.add_argument(
        "--storage",
        default="sqlite:///runs/optuna.db",
        help="Optuna storage URL shared by resumed runs and workers (default sqlite:///runs/optuna.db)",
    )
    parser.add_argument(
        "--study",
        default=None,
        help="study name (default: method, classes and a digest of "
        "the setup, so the same command resumes the same study)",
    )
    parser.add_argument("--bits", type=int, nargs="+", default=None, help="only these bit lengths")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the method per trial (0)")
    parser.add_argument(
        "--validation-size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"held-out database items used as validation queries ({DEFAULT_SIZE})",
    )
    parser.add_argument("--validation-seed", type=int, default=0)
    _add_search_controls(parser)
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/cache"), help="cache of trained Retrain models"
    )
    parser.add_argument("--out", type=Path, default=None, help="results folder (default runs/tune-STUDY)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty results folder")
    add_device_options(parser)


def _add_search_controls(parser: argparse.ArgumentParser) -> None:
    """Options that shape the search itself: fixed or narrowed ranges, constant options, the sampler."""
    parser.add_argument(
        "--fix", action="append", metavar="KEY=VALUE", help="hold a tuned option fixed, e.g. k=3"
    )
    parser.add_argument(
        "--range",
        action="append",
        dest="ranges",
        metavar="KEY=LOW:HIGH",
        help="replace a search range, e.g. alpha=5:500 (log ranges stay log)",
    )
    parser.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="method option kept for every trial (not tuned), e.g. forget_samples=80",
    )
    parser.add_argument(
        "--sampler-seed", type=int, default=0, help="TPE seed (give each parallel worker its own)"
    )


def parse_ranges(pairs: list[str] | None) -> dict[str, tuple[float, float]]:
    """``KEY=LOW:HIGH`` pairs."""
    ranges = {}
    for pair in pairs or []:
        key, _, bounds = pair.partition("=")
        low, sep, high = bounds.partition(":")
        try:
            if not key or not sep:
                raise ValueError
            bounds = (float(low), float(high))
            if not all(math.isfinite(b) for b in bounds):
                raise ValueError
            ranges[key.strip()] = bounds
        except ValueError:
            raise CrossforgetError(
                f"--range {pair!r} is not KEY=LOW:HIGH with finite numbers (e.g. --range alpha=5:500)"
            ) from None
    return ranges


def storage_file(url: str) -> str | None:
    """The database file of a ``sqlite:///`` storage URL (an input an output folder must not hold)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return url.removeprefix("sqlite:///")
    return None


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.sampler_seed < 0:
        raise CrossforgetError(f"--sampler-seed must be 0 or more, got {args.sampler_seed}")
    inputs = [
        ("--checkpoint", args.checkpoint),
        ("--cache", args.cache),
        ("--storage", storage_file(args.storage)),
    ]
    if args.out is not None:
        guard_output(args.out, inputs)
    storage = open_storage(args.storage)
    request = TuningRequest.checked(
        args.method,
        args.forget,
        args.seeds,
        (args.validation_size, args.validation_seed),
        parse_options(args.fix),
        parse_options(args.option),
        parse_ranges(args.ranges),
    )
    if args.out is not None:
        resumed = earlier_result_of(args.out, args.storage, args.study)
        prepare_output_dir(args.out, args.overwrite or resumed)
    settings = device_settings(args)
    checkpoints = open_checkpoints(
        args.checkpoint, args.bits, args.cache, **settings, full_fisher=args.method == "ssd"
    )
    request.fit_to(checkpoints)
    name = args.study or study_name_for(request.setup(checkpoints))
    out = args.out or Path("runs") / f"tune-{name}"
    guard_output(out, inputs)
    overwrite = args.overwrite or earlier_result_of(out, args.storage, name)
    prepare_output_dir(out, overwrite)
    study, payload = tune(
        request, checkpoints, storage, args.storage, name, args.trials, args.sampler_seed, console
    )
    with atomic_directory(out, overwrite=overwrite) as tmp:
        write_tuning(tmp, study, payload)
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in payload["params"].items()
    )
    console.print(f"best objective {payload['objective']:.3f} (trial {payload['best_trial']}): {shown}")
    console.print(
        f"written to {out}; use it with: crossforget unlearn --method {args.method} "
        f"--params {out / 'best.json'} ..."
    )
    return 0
