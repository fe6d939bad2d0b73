"""``crossforget features extract``: cache CLIP embeddings of a dataset for the frozen-backbone mode."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import (
    add_action,
    add_actions,
    add_dataset_options,
    add_device_options,
    data_inputs,
    dataset_spec,
    device_settings,
)
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import check_writable, guard_output
from crossforget.tasks.hashing.training import load_data

DESCRIPTION = "Cached CLIP embeddings for `train --backbone clip-features`."


def register(parser: argparse.ArgumentParser) -> None:
    actions = add_actions(parser)
    extract = add_action(
        actions,
        "extract",
        run_extract,
        help="embed every image and caption of a dataset with CLIP",
        description="Write image embeddings (N, d), caption embeddings (N, K, d) and "
        "metadata to one safetensors file, atomically.",
    )
    add_dataset_options(extract)
    extract.add_argument(
        "--clip-model",
        default="openai/clip-vit-base-patch32",
        metavar="DIR_OR_ID",
        help="a local CLIP folder, or a hub id already in the local cache (nothing is "
        "downloaded; default openai/clip-vit-base-patch32)",
    )
    extract.add_argument("--out", required=True, type=Path, help="output file, e.g. coco-clip.safetensors")
    extract.add_argument("--batch-size", type=int, default=256, help="images or captions per forward pass")
    extract.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_device_options(extract)


def run_extract(args: argparse.Namespace) -> int:
    from crossforget.tasks.hashing.features import extract_features

    guard_output(args.out, data_inputs(args))
    check_writable(args.out, kind="file")
    if args.out.exists() and not args.overwrite:
        raise CrossforgetError(f"{args.out} exists; pass --overwrite or choose another --out")
    if args.batch_size < 1:
        raise CrossforgetError("--batch-size must be at least 1")
    # Features cover every item; the query/train split plays no part (a minimal one satisfies the loader).
    spec = dataclasses.replace(dataset_spec(args), num_query=1, num_train=1)
    loaded = load_data(spec, **device_settings(args))
    summary = extract_features(loaded, args.clip_model, args.out, args.batch_size)
    Console(stderr=True).print(
        f"[green]features[/] of {summary['items']} items x {summary['captions_per_item']} captions "
        f"({summary['feature_dim']}-d) in {summary['seconds']:.1f} s on {summary['device']}: {summary['out']}"
    )
    return 0
