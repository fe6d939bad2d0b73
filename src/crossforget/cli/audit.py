"""``crossforget audit``: list, show and verify the hash-chained audit log of a live index."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crossforget.cli.common import add_action, add_actions


def register(parser: argparse.ArgumentParser) -> None:
    actions = add_actions(parser)
    listing = add_action(actions, "list", run_list, help="one line per record")
    listing.add_argument("index", type=Path)
    listing.add_argument("--json", action="store_true", help="print the records as JSON")
    show = add_action(actions, "show", run_show, help="one record in full (JSON)")
    show.add_argument("index", type=Path)
    show.add_argument("seq", type=int, help="the record number (0 is the build)")
    verify = add_action(
        actions,
        "verify",
        run_verify,
        help="check the hash chain and that the serving version matches its record",
        description="Exit 0 when intact, 1 (with every problem listed) when not.",
    )
    verify.add_argument("index", type=Path)
    verify.add_argument(
        "--head",
        default=None,
        metavar="HASH",
        help="the head hash you kept: also detects records cut off the end",
    )


def run_list(args: argparse.Namespace) -> int:
    from crossforget.index.store import audit_log, read_manifest

    read_manifest(args.index)
    records = audit_log(args.index).records()
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    print(
        f"{'seq':>4}  {'time (UTC)':<19}  {'kind':<6}  {'version':<8}  {'method':<8}  {'deleted':>7}  classes"
    )
    for r in records:
        body = r.body
        request = body.get("request") or {}
        print(
            f"{r.seq:>4}  {r.created[:19]:<19}  {r.kind:<6}  {body['index_after']['version']:<8}  "
            f"{request.get('method') or '-':<8}  {body.get('deleted_count', 0):>7}  "
            f"{', '.join(request.get('classes') or []) or '-'}"
        )
    if records:
        print(f"head {records[-1].hash}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from crossforget.index.store import audit_log, read_manifest

    read_manifest(args.index)
    print(json.dumps(audit_log(args.index).get(args.seq).to_dict(), indent=2))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from crossforget.core.errors import CrossforgetError
    from crossforget.index.store import audit_log, open_index, read_manifest

    read_manifest(args.index)
    log = audit_log(args.index)
    problems = log.verify(head=args.head)
    if not problems:
        try:
            open_index(args.index)  # the serving version's files against its record
        except CrossforgetError as exc:
            problems.append(str(exc))
    if problems:
        for problem in problems:
            print(f"audit verify FAILED: {problem}", file=sys.stderr)
        return 1
    head = log.head()
    print(f"audit log intact: {head.seq + 1} records, serving version verified, head {head.hash}")
    return 0
