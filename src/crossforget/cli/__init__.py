"""The ``crossforget`` command line: one module per command, argparse underneath.

argparse rather than typer/click: the documented syntax ``--bits 16 32 64`` needs options that take
several values, which click cannot express.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from crossforget import __version__
from crossforget.errors import CrossforgetError

COMMAND_MODULES = ("data", "train", "evaluate", "unlearn", "demo")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="crossforget", description="Selective class unlearning for "
                                     "cross-modal hashing retrieval (PPP, SSD and baselines).")
    parser.add_argument("--version", action="version", version=f"crossforget {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"crossforget.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CrossforgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
