"""``crossforget sweep classes|samples|requests``: the paper's Figs. 3 and 4, and the request panel."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import (
    add_action,
    add_actions,
    add_checkpoint_option,
    add_device_options,
    add_forget_option,
    add_params_files,
    device_settings,
    method_options_from_args,
    params_files,
)
from crossforget.core.io import atomic_directory, guard_output, prepare_output_dir
from crossforget.experiments.panel import PANELS, panel_sets, request_points, write_panel
from crossforget.experiments.sweeps import (
    PAPER_CLASS_SETS,
    PAPER_SAMPLE_SIZES,
    SCORE_SPLITS,
    SUBSTITUTES,
    SweepConfig,
    class_points,
    class_sets,
    parse_class_set,
    run_sweep,
    sample_points,
    write_sweep,
)
from crossforget.tasks.hashing.columns import open_checkpoints
from crossforget.unlearning.methods import reference_columns

DESCRIPTION = (
    "Run PPP (and SSD) over several forget settings, with Original and "
    "Retrain as ground truths; mean mAP with 95% confidence intervals over seeds."
)


def register(parser: argparse.ArgumentParser) -> None:
    kinds = add_actions(parser, dest="sweep")
    paper = " ".join('"' + ",".join(s) + '"' for s in PAPER_CLASS_SETS)
    stand_ins = ", ".join(f"{k} -> {' or '.join(v)}" for k, v in SUBSTITUTES.items())
    classes = add_action(
        kinds,
        "classes",
        run,
        help="forget growing sets of classes (Fig. 3)",
        description=f"Default sets (the paper's): {paper}; a class the data lacks is replaced ({stand_ins}).",
    )
    _add_class_sets(
        classes, "--sets", help="comma-separated class sets, one per point (default: the paper's four)"
    )
    _common(classes, "classes")
    samples = add_action(
        kinds,
        "samples",
        run,
        help="vary the forget sample size (Fig. 4)",
        description="Forget one request with several forget sample sizes.",
    )
    add_forget_option(samples, help="classes to forget (dog)", default=["dog"])
    samples.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(PAPER_SAMPLE_SIZES),
        help="forget sample sizes (default 20 40 60 80 100)",
    )
    _common(samples, "samples")
    requests = add_action(
        kinds,
        "requests",
        run,
        help="a panel of forget requests, worst case reported (robustness)",
        description="Run every request of a panel (single classes and multi-class sets) and report "
        "|Delta| per request at its worst seed, the mean and the worst request. Panels: "
        + "; ".join(f"{name}: " + " ".join("+".join(r) for r in sets) for name, sets in PANELS.items()),
    )
    requests.add_argument("--panel", choices=sorted(PANELS), default="default", help="named panel (default)")
    _add_class_sets(requests, "--requests", help="comma-separated class sets instead of a named panel")
    _common(requests, "requests")


def _add_class_sets(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A list of forget requests, each a comma-separated class set (parsed by ``parse_class_set``)."""
    parser.add_argument(flag, nargs="+", default=None, metavar="A,B,...", help=help)


def _common(parser: argparse.ArgumentParser, kind: str) -> None:
    add_checkpoint_option(parser, help="Original checkpoint folder (bits<B>/)")
    parser.add_argument(
        "--methods", nargs="+", default=["ppp"], help="sampled methods (default ppp; e.g. ppp ssd)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the methods (0 1 2)"
    )
    parser.add_argument("--bits", type=int, nargs="+", default=None, help="only these bit lengths")
    parser.add_argument(
        "--no-retrain",
        action="store_true",
        help="skip the Retrain ground truth (no training; no |Delta| D_f)",
    )
    add_params_files(parser)
    parser.add_argument(
        "--method-option",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="method option, repeatable, e.g. ppp.k=3",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path("runs/cache"), help="cache of trained Retrain models"
    )
    parser.add_argument("--out", type=Path, default=Path("runs") / f"sweep-{kind}", help="results folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty results folder")
    parser.add_argument(
        "--score-on",
        choices=SCORE_SPLITS,
        default="test",
        help="test: the query split the tables report; validation: tune's held-out split "
        "(database minus train), the one to choose settings on",
    )
    add_device_options(parser)


def _method_options(args: argparse.Namespace) -> dict[str, dict]:
    options = params_files(args)
    for method, values in method_options_from_args(args.method_option).items():
        options.setdefault(method, {}).update(values)
    return options


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    guard_output(
        args.out,
        [
            ("--checkpoint", args.checkpoint),
            ("--cache", args.cache),
            ("--ppp-params", args.ppp_params),
            ("--ssd-params", args.ssd_params),
        ],
    )
    prepare_output_dir(args.out, args.overwrite)
    given = getattr(args, "sets", None) or getattr(args, "requests", None)
    for position, text in enumerate(given or (), 1):
        parse_class_set(text, position)  # empty sets fail before anything is loaded
    references = [r for r in reference_columns() if not (args.no_retrain and r == "retrain")]
    config = SweepConfig(
        methods=args.methods,
        seeds=args.seeds,
        references=references,
        method_options=_method_options(args),
        score_on=args.score_on,
    )
    config.check()
    checkpoints = open_checkpoints(
        args.checkpoint, args.bits, args.cache, **device_settings(args), full_fisher="ssd" in args.methods
    )
    if args.sweep == "classes":
        points = class_points(class_sets(args.sets, checkpoints.class_names))
    elif args.sweep == "requests":
        names = checkpoints.class_names
        chosen = class_sets(args.requests, names) if args.requests else panel_sets(PANELS[args.panel], names)
        points = request_points(chosen)
    else:
        points = sample_points(args.sizes, args.forget, checkpoints, args.methods)
    results = run_sweep(args.sweep, points, checkpoints, config, console)
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        if args.sweep == "requests":
            write_panel(tmp, results)
        else:
            write_sweep(tmp, results)
    extra = ", panel.json, .csv, .md, panel.png" if args.sweep == "requests" else ""
    console.print(
        f"{args.sweep} sweep: {results['seconds']:.0f} s; written to {args.out} "
        f"(results.json, .csv, .md, results_detail.csv, .md, results.png{extra})"
    )
    return 0
