"""``crossforget plot density``: the paper's Fig. 1 for a hashing or classifier checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from crossforget.cli.common import (
    add_action,
    add_actions,
    add_device_options,
    add_request_options,
    device_settings,
    parse_options,
)
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_json, check_writable, guard_output
from crossforget.experiments.density import (
    MODALITIES,
    REDUCTIONS,
    checkpoint_kind,
    classifier_representations,
    density_map,
    density_summary,
    forget_indices,
    hashing_representations,
)


def register(parser: argparse.ArgumentParser) -> None:
    figures = add_actions(parser, dest="figure")
    density = add_action(
        figures,
        "density",
        run_density,
        help="2-D density of codes or features per group: forget, neighbour, other retained (Fig. 1)",
        description="Reduce the training samples' real-valued codes (hashing) or penultimate features "
        "(classifier) to 2-D and draw a kernel density per group, with marginal densities. Neighbours are "
        "the k nearest classes by prototype distance, as PPP picks them.",
    )
    add_request_options(
        density,
        checkpoint="hashing checkpoint (or bits<B>/ folder) or classifier checkpoint folder",
        forget="forget classes (dog)",
        default=["dog"],
    )
    density.add_argument("--k", type=int, default=3, help="neighbour classes per forget class (3)")
    density.add_argument(
        "--modality",
        default="both",
        choices=MODALITIES,
        help="hashing codes: image, text or both (the mean of the two; default)",
    )
    density.add_argument("--method", default="pca", choices=REDUCTIONS, help="2-D reduction (pca)")
    density.add_argument(
        "--bits", type=int, default=None, help="bit length in a bits<B>/ folder (the smallest)"
    )
    density.add_argument(
        "--max-points", type=int, default=4000, help="seeded sample of training items (4000)"
    )
    density.add_argument("--seed", type=int, default=0, help="seed of the sample and of t-SNE")
    density.add_argument("--root", type=Path, default=None, help="classifier data folder (as at training)")
    density.add_argument(
        "--data-option",
        action="append",
        metavar="KEY=VALUE",
        help="classifier data loader option used at training, repeatable",
    )
    density.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG to write (default runs/density-CLASSES-METHOD.png); a JSON beside it",
    )
    density.add_argument("--overwrite", action="store_true", help="replace an existing figure")
    add_device_options(density)


def run_density(args: argparse.Namespace) -> int:
    from crossforget.reporting.figures import density_chart

    console = Console(stderr=True)
    name = "-".join(args.forget).replace(" ", "_")
    out = args.out or Path("runs") / f"density-{name}-{args.method}.png"
    if out.suffix.lower() != ".png":
        raise CrossforgetError(f"--out {out} must end in .png")
    for written in (out, out.with_suffix(".json")):
        guard_output(written, [("--checkpoint", args.checkpoint), ("--root", args.root)])
    check_writable(out, kind="file")
    if out.exists() and not args.overwrite:
        raise CrossforgetError(f"{out} exists; pass --overwrite or choose another --out")
    kind = checkpoint_kind(args.checkpoint)
    if kind == "classifier":
        options = parse_options(args.data_option)
        if args.root is not None:
            options["root"] = args.root
        representations = classifier_representations(args.checkpoint, options, args.forget)
    elif kind == "hashing":
        if args.root is not None or args.data_option:
            raise CrossforgetError(
                "--root/--data-option apply to classifier checkpoints; hashing ones record their data"
            )
        representations = hashing_representations(
            args.checkpoint, args.bits, args.modality, device_settings(args)["device"]
        )
    else:
        raise CrossforgetError(
            f"{args.checkpoint} holds a {kind!r} checkpoint; density plots need a hashing "
            "model or a classifier"
        )
    forget = forget_indices(representations.class_names, args.forget)
    result = density_map(representations, forget, args.k, args.method, args.seed, args.max_points)
    density_chart(result, out)
    atomic_write_json(out.with_suffix(".json"), density_summary(result, args.checkpoint))
    counts = ", ".join(f"{k} {v}" for k, v in result.info["samples"].items())
    console.print(
        f"{result.info['reduction']} density of {counts} samples written to {out} "
        f"(neighbours: {', '.join(result.info['neighbours'])})"
    )
    return 0
