"""Options shared by several commands, and parsing helpers."""

from __future__ import annotations

import argparse

from crossforget.data.registry import DatasetSpec
from crossforget.errors import CrossforgetError


def parse_options(pairs: list[str] | None) -> dict:
    """``key=value`` pairs; values are read as int, float, bool or string."""
    options: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CrossforgetError(f"option {pair!r} is not KEY=VALUE (e.g. --data-option num_items=2000)")
        options[key.strip()] = _literal(value.strip())
    return options


def _literal(value: str) -> object:
    if value.lower() in {"true", "false"}:
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="scenes", help="dataset name (default: scenes, built in)")
    group.add_argument("--data-root", default=None, help="folder of a real benchmark (coco, mirflickr, ...)")
    group.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                       help="dataset option, repeatable (scenes: num_items, image_size, seed)")
    group.add_argument("--num-query", type=int, default=None, help="query items (default: 1000 scenes, 5000 "
                       "real benchmarks)")
    group.add_argument("--num-train", type=int, default=None, help="training items (default: 5000 scenes, "
                       "10000 real benchmarks)")
    group.add_argument("--split-seed", type=int, default=0, help="seed of the query/train permutation")


def dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    options = parse_options(args.data_option)
    if args.data_root is not None:
        options["root"] = args.data_root
    builtin = args.dataset == "scenes"
    return DatasetSpec(
        name=args.dataset,
        options=options,
        num_query=args.num_query or (1000 if builtin else 5000),
        num_train=args.num_train or (5000 if builtin else 10000),
        split_seed=args.split_seed,
    )
