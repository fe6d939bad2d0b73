"""Options shared by several commands, parsing helpers, and how a command declares its sub-actions.

Each command module (cli/<command>.py) gets its parser from the dispatcher (cli/__init__.py), adds its
flags with the groups below and names its handler; this is the only module command modules share.
The library modules behind torch are imported inside the helpers that need them: the live-index
commands (index, search, audit, serve) parse and print their help without loading torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from crossforget.core.errors import CrossforgetError
from crossforget.data.registry import DatasetSpec, dataset_entries, dataset_entry

if TYPE_CHECKING:
    from crossforget.engine.training import TrainingRecipe

Handler = Callable[[argparse.Namespace], int]


def add_action(
    actions: argparse._SubParsersAction,
    name: str,
    handler: Handler,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """One sub-action of a command (``data preview``, ``sweep classes``, ...) that runs ``handler``."""
    parser = actions.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_actions(parser: argparse.ArgumentParser, dest: str = "action") -> argparse._SubParsersAction:
    """The sub-actions of a command (``add_action`` adds each); one must be named, shown as ``DEST``."""
    return parser.add_subparsers(dest=dest, metavar=dest.upper(), required=True)


def add_checkpoint_option(parser: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """--checkpoint: the checkpoint folder a command reads (``help`` says which kind)."""
    parser.add_argument("--checkpoint", required=required, type=Path, default=None, help=help)


def add_forget_option(parser: argparse.ArgumentParser, help: str, default: list[str] | None = None) -> None:
    """--forget CLASS ...: the classes of a forget request; required unless ``default`` is given."""
    parser.add_argument(
        "--forget", nargs="+", required=default is None, default=default, metavar="CLASS", help=help
    )


def add_request_options(
    parser: argparse.ArgumentParser, checkpoint: str, forget: str, default: list[str] | None = None
) -> None:
    """--checkpoint then --forget: the model a command works on and the forget request it applies
    (``checkpoint`` and ``forget`` are their help texts; ``default`` makes --forget optional)."""
    add_checkpoint_option(parser, help=checkpoint)
    add_forget_option(parser, help=forget, default=default)


def finite_float(text: str) -> float:
    """argparse type of every real-valued flag: NaN and Inf would silently poison a run."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def parse_options(pairs: list[str] | None) -> dict:
    """``key=value`` pairs; values are read as int, float, bool or string."""
    options: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CrossforgetError(f"option {pair!r} is not KEY=VALUE (e.g. --data-option num_items=2000)")
        options[key.strip()] = parse_value(value.strip())
    return options


def parse_value(value: str) -> object:
    """A flag's text as bool, int, float or string; the options' own validators check the type."""
    if value.lower() in {"true", "false"}:
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def method_options_from_args(pairs: list[str] | None) -> dict[str, dict]:
    """``METHOD.KEY=VALUE`` pairs grouped by method."""
    grouped: dict[str, list[str]] = {}
    for pair in pairs or []:
        method, dot, rest = pair.partition(".")
        if not dot or "=" not in rest:
            raise CrossforgetError(f"--method-option {pair!r} is not METHOD.KEY=VALUE (e.g. ppp.alpha=30)")
        grouped.setdefault(method, []).append(rest)
    from crossforget.unlearning.methods import validate_options

    return {method: validate_options(method, parse_options(values)) for method, values in grouped.items()}


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    names = ", ".join(entry.label() for entry in dataset_entries("multilabel"))
    scenes_options = ", ".join(dataset_entry("scenes", "multilabel").options)
    group.add_argument(
        "--dataset",
        default=None,
        help=f"dataset name: {names} (default: scenes; with "
        "--backbone clip-features: the dataset of the features file)",
    )
    group.add_argument("--data-root", default=None, help="folder of a real benchmark (coco, mirflickr, ...)")
    group.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help=f"dataset option, repeatable (scenes: {scenes_options})",
    )
    group.add_argument(
        "--num-query", type=int, default=None, help="query items (default: 1000 scenes, 5000 real benchmarks)"
    )
    group.add_argument(
        "--num-train",
        type=int,
        default=None,
        help="training items (default: 5000 scenes, 10000 real benchmarks)",
    )
    group.add_argument("--split-seed", type=int, default=0, help="seed of the query/train permutation")
    group.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="jsonl: accept image paths that are absolute or leave --data-root (refused by default)",
    )


def dataset_spec(args: argparse.Namespace, fallback: dict | None = None) -> DatasetSpec:
    """The spec from the flags; ``fallback`` ({"name", "options"}) applies when no data flag was given."""
    options = parse_options(args.data_option)
    if args.data_root is not None:
        options["root"] = args.data_root
    if getattr(args, "allow_outside_root", False):
        options["allow_outside_root"] = True
    name = args.dataset
    if name is None and not options and fallback is not None:
        name, options = fallback["name"], dict(fallback["options"])
    name = name or "scenes"
    builtin = name == "scenes"
    sizes = {"--num-query": args.num_query, "--num-train": args.num_train}
    for flag, value in sizes.items():
        if value is not None and value < 1:
            raise CrossforgetError(f"{flag} must be at least 1, got {value} (leave it out for the default)")
    return DatasetSpec(
        name=name,
        options=options,
        num_query=args.num_query if args.num_query is not None else (1000 if builtin else 5000),
        num_train=args.num_train if args.num_train is not None else (5000 if builtin else 10000),
        split_seed=args.split_seed,
    )


def data_inputs(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """The data a command reads (its root folder, a features file, a local CLIP), for ``guard_output``."""
    root = parse_options(getattr(args, "data_option", None)).get("root")
    inputs = [("--data-root", getattr(args, "data_root", None)), ("--data-option root", root)]
    inputs += [("--features", getattr(args, "features", None))]
    clip = getattr(args, "clip_model", None)
    if clip is not None and os.path.exists(clip):
        inputs.append(("--clip-model", clip))
    return [(what, str(path)) for what, path in inputs if isinstance(path, str | os.PathLike)]


def add_device_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("device")
    group.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N; "
        "on CUDA forward passes run in bf16 autocast",
    )
    group.add_argument(
        "--num-workers",
        type=int,
        default=None,
        metavar="N",
        help="threads decoding image files ahead of use (default: min(8, CPU cores); "
        "0 decodes in the main thread)",
    )
    group.add_argument(
        "--image-memory",
        type=finite_float,
        default=4.0,
        metavar="GB",
        help="decoded images kept in memory (default 4): a data set that fits is decoded "
        "once, else the images seen first are kept until this is full",
    )


def device_settings(args: argparse.Namespace) -> dict:
    """``device``, ``num_workers`` and ``memory_budget`` keyword arguments from the device flags."""
    from crossforget.core.device import resolve_device

    workers = args.num_workers if args.num_workers is not None else min(8, os.cpu_count() or 1)
    if workers < 0 or args.image_memory < 0:
        raise CrossforgetError("--num-workers and --image-memory must not be negative")
    return {
        "device": resolve_device(args.device),
        "num_workers": workers,
        "memory_budget": int(args.image_memory * (1 << 30)),
    }


def add_backbone_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--backbone",
        default="small",
        choices=["small", "clip", "clip-features"],
        help="small: CPU encoders trained from scratch; clip: CLIP ViT fine-tuned (GPU); "
        "clip-features: hash heads on cached CLIP features (CPU, seconds)",
    )
    group.add_argument(
        "--clip-model",
        default=None,
        metavar="DIR_OR_ID",
        help="pretrained CLIP of --backbone clip: a local folder, or a hub id already in the "
        "local cache (default openai/clip-vit-base-patch32); nothing is downloaded",
    )
    group.add_argument(
        "--features",
        default=None,
        metavar="FILE",
        help="features file of --backbone clip-features (from `crossforget features extract`)",
    )
    group.add_argument(
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="model option, repeatable (small: cnn_width, feature_dim, embed_dim, dropout, "
        "image_size; clip: dropout, max_text_length; clip-features: dropout)",
    )


def model_options(args: argparse.Namespace) -> dict:
    """Model options from the backbone flags; the small backbone's stay exactly the --model-option pairs."""
    options = parse_options(args.model_option)
    if args.clip_model is not None and args.backbone != "clip":
        raise CrossforgetError("--clip-model applies to --backbone clip (features files record their model)")
    if args.features is not None and args.backbone != "clip-features":
        raise CrossforgetError("--features applies to --backbone clip-features")
    if args.backbone != "small":
        options["backbone"] = args.backbone
    if args.clip_model is not None:
        options["clip_model"] = args.clip_model
    if args.features is not None:
        options["features"] = os.path.abspath(args.features)
    from crossforget.models.options import check_model_options

    check_model_options(options)
    return options


def features_dataset(args: argparse.Namespace) -> dict | None:
    """The dataset a features file was extracted from: the default data of --backbone clip-features."""
    if args.backbone != "clip-features" or args.features is None:
        return None
    from crossforget.models.features import read_metadata

    return read_metadata(args.features)["dataset"]


def add_learning_rate_options(parser: argparse.ArgumentParser) -> None:
    """--lr, --encoder-lr and --head-lr of the hashing training recipe (train, demo)."""
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
    from crossforget.engine.training import recipe_for

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


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--method, --seed and the method option flags, shared by ``unlearn`` and ``forget``."""
    from crossforget.unlearning.methods import method_names, option_flags

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
    # Flags the methods declare for their options (``register_method(flags=...)``); their values are
    # checked against the chosen method's options (types, ranges, finiteness) like --option values.
    for name, aliases in option_flags().items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, *aliases, dest=name, type=parse_value, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--retain-budget",
        default=None,
        metavar="POINTS|off",
        help="PPP's forgetting guard: allowed D_r drop on held-out items in points (default 1.0); "
        "'off' applies the configured alpha unchecked",
    )


def method_settings(args: argparse.Namespace) -> dict:
    """Options from --params, then explicit flags, then --option (later ones win)."""
    from crossforget.unlearning.methods import option_flags

    options: dict = {}
    if args.params is not None:
        options.update(read_params(args.params, args.method))
    options.update({k: getattr(args, k) for k in option_flags() if getattr(args, k) is not None})
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
    from crossforget.unlearning.methods import validate_options

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


def add_params_files(parser: argparse.ArgumentParser) -> None:
    """--ppp-params and --ssd-params: tuned options of the sampled methods (demo, sweep)."""
    parser.add_argument("--ppp-params", type=Path, default=None, help="JSON of PPP options (e.g. from tune)")
    parser.add_argument("--ssd-params", type=Path, default=None, help="JSON of SSD options (e.g. from tune)")


def params_files(args: argparse.Namespace) -> dict[str, dict]:
    """The options of --ppp-params / --ssd-params, by method (only the files given)."""
    files = (("ppp", args.ppp_params), ("ssd", args.ssd_params))
    return {method: read_params(path, method) for method, path in files if path is not None}
