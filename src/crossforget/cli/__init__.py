"""The ``crossforget`` command line: one module per command, argparse underneath.

argparse rather than typer/click: the documented syntax ``--bits 16 32 64`` needs options that take
several values, which click cannot express.
"""

from __future__ import annotations

import os

# Threads that spin while waiting thrash when the cores are shared (CI, laptops under load): a passive
# wait policy costs little on an idle machine and avoids 10-100x slowdowns on a busy one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import typing  # noqa: E402
from collections.abc import Sequence

from crossforget import __version__  # noqa: E402
from crossforget.errors import CrossforgetError  # noqa: E402

COMMAND_MODULES = (
    "data",
    "train",
    "evaluate",
    "unlearn",
    "demo",
    "features",
    "table1",
    "tune",
    "sweep",
    "plot",
    "report",
)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one ``error:`` line (exit 2), like every other input error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="crossforget",
        description="Selective class unlearning for cross-modal hashing retrieval (PPP, SSD and baselines).",
    )
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
