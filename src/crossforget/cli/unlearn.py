"""``crossforget unlearn``: honour a forget request on a trained checkpoint with one method."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console

from crossforget.cli import COMMAND_HELP
from crossforget.cli.common import add_device_options, device_settings, parse_options, parse_value
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory, atomic_write_json, guard_output, prepare_output_dir
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest
from crossforget.reporting.tables import print_table, write_results
from crossforget.tasks.hashing import evaluation_run
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint, save_hashing_checkpoint
from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs, evaluation_rows
from crossforget.tasks.hashing.task import run_method
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method, method_names, validate_options

# Flags that map onto method options of the same (or the paper's) name; their values are checked
# against the method's options (types, ranges, finiteness) like --option values.
OPTION_FLAGS = ("forget_samples", "alpha", "tau", "lam", "lam_max", "k", "estimator", "epochs")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "unlearn",
        help=COMMAND_HELP["unlearn"],
        description="Run one unlearning method; the input checkpoint is never modified.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a checkpoint folder or a folder of bits<B> checkpoints (all are processed)",
    )
    parser.add_argument("--forget", nargs="+", required=True, metavar="CLASS", help="classes to forget")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the new checkpoint(s)")
    add_method_options(parser)
    parser.add_argument(
        "--evaluate", action="store_true", help="also evaluate the new model(s) and print mAP"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    add_device_options(parser)
    parser.set_defaults(handler=run)


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--method, --seed and the method option flags, shared by ``unlearn`` and ``forget``."""
    parser.add_argument("--method", default="ppp", help="one of: " + ", ".join(method_names()))
    parser.add_argument("--seed", type=int, default=0, help="seed of the forget/retain samples")
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="JSON file of method options (e.g. best.json from `crossforget tune`)",
    )
    parser.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="any method option, repeatable"
    )
    for name in OPTION_FLAGS:
        flag = "--" + name.replace("_", "-")
        aliases = [flag] + (["--lambda"] if name == "lam" else ["--lambda-max"] if name == "lam_max" else [])
        parser.add_argument(*aliases, dest=name, type=parse_value, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--retain-budget",
        default=None,
        metavar="POINTS|off",
        help="PPP's forgetting guard: allowed D_r drop on held-out items in points (default 1.0); "
        "'off' applies the configured alpha unchecked",
    )


def method_settings(args: argparse.Namespace) -> dict:
    """Options from --params, then explicit flags, then --option (later ones win)."""
    options: dict = {}
    if args.params is not None:
        options.update(read_params(args.params, args.method))
    options.update({k: getattr(args, k) for k in OPTION_FLAGS if getattr(args, k) is not None})
    if args.retain_budget is not None:
        options["retain_budget"] = retain_budget(args.retain_budget)
    options.update(parse_options(args.option))
    return options


def retain_budget(text: str) -> float | None:
    """``--retain-budget``: a finite number of points >= 0, or 'off' (None: no guard)."""
    if text.strip().lower() in {"off", "none"}:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise CrossforgetError(
            f"--retain-budget {text!r} is not a budget; give mAP points >= 0 (e.g. 1.0) or 'off'"
        )
    return value


def read_params(path: Path, method: str) -> dict:
    """A params file is either {option: value} or the tuner's {"method": ..., "params": {...}};
    the values are checked against the method's options."""
    shape = 'a JSON object {"option": value, ...} or {"method": ..., "params": {...}} (best.json of tune)'
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CrossforgetError(f"cannot read --params {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise CrossforgetError(f"--params {path} is not UTF-8 text; it must hold {shape}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise CrossforgetError(
            f"--params {path} is not valid JSON ({reason}); it must hold {shape}"
        ) from None
    if isinstance(payload, dict) and "params" in payload:
        if payload.get("method", method) != method:
            raise CrossforgetError(f"{path} holds parameters for {payload['method']!r}, not {method}")
        payload = payload["params"]
    if not isinstance(payload, dict):
        raise CrossforgetError(f"--params {path} holds a JSON {type(payload).__name__}; it must hold {shape}")
    return validate_options(method, payload)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    dirs = checkpoint_dirs(args.checkpoint)
    guard_output(args.out, [("--checkpoint", args.checkpoint), ("--params", args.params)])
    prepare_output_dir(args.out, args.overwrite)
    request = ForgetRequest(args.forget)
    method = create_method(args.method, **method_settings(args))
    settings = device_settings(args)
    report = {
        "method": args.method,
        "forget": list(request.classes),
        "seed": args.seed,
        "checkpoint": str(args.checkpoint),
        "runs": {},
        "environment": environment_stamp(),
    }
    loaded = None
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        for directory in dirs:
            saved = load_hashing_checkpoint(directory, settings["device"])
            if loaded is None or loaded.spec != saved.dataset_spec:
                loaded = load_data(saved.dataset_spec, **settings)
            loaded.check(saved.config, directory)
            new, result = run_method(method, saved, loaded, request, args.seed)
            target = tmp / directory.name if len(dirs) > 1 else tmp
            save_hashing_checkpoint(target, new)
            report["runs"][str(saved.bits)] = {"timings": result.timings, "diagnostics": result.diagnostics}
            console.print(
                f"[green]{args.method}[/] {saved.bits} bits: {result.timings['total']:.2f} s "
                + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items() if k != "total")
            )
            guard = result.diagnostics.get("guard", {})
            if "acted_on" in guard:
                console.print(
                    f"  forgetting guard: alpha {guard['alpha']:.4g} after {len(guard['steps'])} probe "
                    f"step(s), acted on {guard['acted_on']}, {'met' if guard['met'] else 'NOT met'}"
                )
        atomic_write_json(tmp / "unlearn.json", report)
        if args.evaluate:  # inside the block: a failed evaluation leaves no checkpoint behind either
            results = evaluation_run.evaluate_checkpoints(checkpoint_dirs(tmp), args.forget, **settings)
            results["checkpoints"] = [
                str(args.out / Path(d).relative_to(tmp)) for d in results["checkpoints"]
            ]
            columns, rows = evaluation_rows(results)
            title = f"{args.method}: retrieval mAP (%) after forgetting {', '.join(request.classes)}"
            print_table(title, columns, rows, Console())
            write_results(tmp, "evaluation", results, columns, rows, title)
    console.print(f"unlearned checkpoint(s) written to {args.out}")
    return 0
