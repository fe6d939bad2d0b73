"""``crossforget forget``: one forget request on a live index (unlearn, delete, re-encode, swap, audit)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossforget.cli.common import add_method_options, method_settings
from crossforget.core.errors import CrossforgetError
from crossforget.metrics.keys import DIRECTIONS

DESCRIPTION = (
    "Unlearn classes from the serving model, delete items, re-encode the rest and swap "
    "the new version in atomically; one audit record per request."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", type=Path, help="the index folder")
    parser.add_argument("--classes", nargs="+", default=[], metavar="CLASS", help="classes to forget")
    parser.add_argument("--items", type=Path, default=None, help="a file of item ids to delete, one a line")
    parser.add_argument(
        "--delete-class-items",
        action="store_true",
        help="also delete every item carrying one of --classes",
    )
    add_method_options(parser)
    parser.add_argument("--json", action="store_true", help="print the audit record as JSON")
    parser.add_argument("--device", default="cpu", help="where the model runs (default cpu; auto, cuda[:N])")


def read_items(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CrossforgetError(f"cannot read --items {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CrossforgetError(f"--items {path} is not UTF-8 text; write one item id a line") from None
    items = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not items:
        raise CrossforgetError(f"--items {path} lists no item id; write one a line")
    return items


def run(args: argparse.Namespace) -> int:
    from crossforget.core.device import resolve_device
    from crossforget.index.forget import IndexForgetRequest, forget

    request = IndexForgetRequest(
        classes=args.classes,
        items=read_items(args.items),
        delete_class_items=args.delete_class_items,
        method=args.method,
        options=method_settings(args),
        seed=args.seed,
    )
    record = forget(args.index, request, device=resolve_device(args.device))
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(
        f"committed audit record #{record['seq']}: version {record['index_after']['version']}, "
        f"{record['deleted_count']} items deleted, {record['items_after']} remain "
        f"({record['durations']['total_before_commit']:.1f} s)"
    )
    check = record.get("verification")
    if check:
        for direction in DIRECTIONS:
            b, a = check["before"][direction], check["after"][direction]
            print(
                f"  {direction}: D_f {_pct(b['D_f'])} -> {_pct(a['D_f'])}, "
                f"D_r {_pct(b['D_r'])} -> {_pct(a['D_r'])}"
            )
        print(
            f"  MIA on forgotten training items: {_pct(check['before']['mia'])} -> "
            f"{_pct(check['after']['mia'])}"
        )
    print(f"  audit head {record['hash']}")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"
