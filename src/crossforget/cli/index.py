"""``crossforget index``: build a live FAISS index from a checkpoint, and describe one."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from crossforget.cli.common import (
    add_action,
    add_actions,
    add_checkpoint_option,
    add_dataset_options,
    add_device_options,
    data_inputs,
    dataset_spec,
)
from crossforget.core.errors import CrossforgetError


def register(parser: argparse.ArgumentParser) -> None:
    actions = add_actions(parser)
    build = add_action(
        actions,
        "build",
        run_build,
        help="encode the database with a checkpoint into a new index folder",
        description="Encode every database item (both modalities) with the checkpoint and store the "
        "binary codes in FAISS (exact IndexBinaryFlat with stable ids; optionally IndexBinaryIVF).",
    )
    add_checkpoint_option(build, help="one checkpoint folder (e.g. runs/original/bits32)")
    build.add_argument("--out", required=True, type=Path, help="the index folder to create")
    build.add_argument(
        "--ivf",
        type=int,
        default=None,
        metavar="NLIST",
        help="also store IndexBinaryIVF with NLIST lists (approximate, for large databases; "
        "its recall@10 against exact search is measured and recorded)",
    )
    build.add_argument(
        "--nprobe", type=int, default=8, help="lists searched per query with --ivf (default 8)"
    )
    build.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    add_dataset_options(build)
    add_device_options(build)
    info = add_action(
        actions, "info", run_info, help="what an index holds: version, items, model, forgotten classes"
    )
    info.add_argument("index", type=Path, help="the index folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.add_argument("--items", action="store_true", help="also list every item id")


def _spec(args: argparse.Namespace, saved: object) -> object:
    """The checkpoint's data unless data flags are given; the split must stay the checkpoint's."""
    base = saved.dataset_spec
    given = args.dataset is not None or args.data_option or args.data_root is not None
    if not given and args.num_query is None and args.num_train is None and args.split_seed == 0:
        return base
    spec = dataset_spec(args, fallback={"name": base.name, "options": base.options})
    spec = dataclasses.replace(
        spec,
        num_query=base.num_query if args.num_query is None else spec.num_query,
        num_train=base.num_train if args.num_train is None else spec.num_train,
    )
    split = (spec.num_query, spec.num_train, spec.split_seed)
    if split != (base.num_query, base.num_train, base.split_seed):
        raise CrossforgetError(
            f"the checkpoint was trained on the split --num-query {base.num_query} --num-train "
            f"{base.num_train} --split-seed {base.split_seed}; the index uses that split "
            "(leave the flags out)"
        )
    return spec


def run_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from crossforget.cli.common import device_settings
    from crossforget.core.io import guard_output, prepare_output_dir
    from crossforget.index.build import IvfOptions, build_index
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
    from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs
    from crossforget.tasks.hashing.training import load_data

    dirs = checkpoint_dirs(args.checkpoint)
    if len(dirs) != 1:
        names = ", ".join(str(d) for d in dirs)
        raise CrossforgetError(
            f"--checkpoint {args.checkpoint} holds {len(dirs)} checkpoints ({names}); name one"
        )
    guard_output(args.out, [("--checkpoint", args.checkpoint), *data_inputs(args)])
    prepare_output_dir(args.out, args.overwrite)
    settings = device_settings(args)
    saved = load_hashing_checkpoint(dirs[0], settings["device"])
    loaded = load_data(_spec(args, saved), **settings)
    ivf = IvfOptions(args.ivf, args.nprobe) if args.ivf is not None else None
    record = build_index(dirs[0], saved, loaded, args.out, ivf, overwrite=args.overwrite)
    console = Console(stderr=True)
    t = record["durations"]
    console.print(
        f"index written to {args.out}: {record['items_after']} items, {saved.bits} bits, version "
        f"{record['index_after']['version']}; encoding {t['encode']:.1f} s "
        f"({record['encode_seconds_per_1000_items']:.2f} s per 1,000 items), total {t['total']:.1f} s"
    )
    if record.get("ivf"):
        recall = record["ivf"]["recall_at_10"]
        console.print(
            f"IVF ({args.ivf} lists, nprobe {args.nprobe}) recall@10 against exact search: "
            f"I2T {recall['I2T']['recall']:.3f}, T2I {recall['T2I']['recall']:.3f} "
            f"({recall['queries']} held-out queries)"
        )
    return 0


def index_summary(index_dir: Path) -> dict:
    from crossforget.index.store import audit_log, open_index, read_manifest

    manifest = read_manifest(index_dir)
    version = open_index(index_dir)
    head = audit_log(index_dir).head()
    return {
        "index": str(index_dir),
        "version": version.name,
        "seq": version.seq,
        "items": int(version.ids.size),
        "bits": manifest["bits"],
        "classes": len(manifest["class_names"]),
        "forgotten_classes": version.meta.get("forgotten_classes", []),
        "model_sha256": version.model_sha256,
        "index_sha256": version.sha256,
        "source_checkpoint": manifest.get("source_checkpoint"),
        "dataset": manifest["dataset"],
        "ivf": version.meta.get("ivf") and manifest.get("ivf"),
        "audit_records": head.seq + 1 if head is not None else 0,
        "audit_head": head.hash if head is not None else None,
        "_version": version,
    }


def run_info(args: argparse.Namespace) -> int:
    summary = index_summary(args.index)
    version = summary.pop("_version")
    if args.items:
        summary["item_ids"] = [str(i) for i in version.item_ids]
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    forgotten = ", ".join(summary["forgotten_classes"]) or "none"
    lines = [
        f"index {summary['index']}: version {summary['version']} (audit record #{summary['seq']})",
        f"  items {summary['items']}, {summary['bits']} bits, {summary['classes']} classes; "
        f"forgotten: {forgotten}",
        f"  model sha256 {summary['model_sha256']}",
        f"  index sha256 {summary['index_sha256']}",
        f"  audit: {summary['audit_records']} records, head {summary['audit_head']}",
        f"  dataset {summary['dataset']['name']} {summary['dataset']['options']}",
    ]
    if summary["ivf"]:
        recall = summary["ivf"]["recall_at_10"]
        lines.append(
            f"  IVF: {summary['ivf']['nlist']} lists, nprobe {summary['ivf']['nprobe']}, recall@10 at build "
            f"I2T {recall['I2T']['recall']:.3f} / T2I {recall['T2I']['recall']:.3f}"
        )
    print("\n".join(lines))
    if args.items:
        print("\n".join(summary["item_ids"]))
    return 0
