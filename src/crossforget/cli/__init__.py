"""The ``crossforget`` command line: one module per command, argparse underneath.

argparse rather than click: the documented syntax ``--bits 16 32 64`` needs options that take
several values, which click cannot express.

Only the module of the command being run is imported (``crossforget --help`` imports none of them, so
no torch or transformers), and interrupts (Ctrl-C, SIGTERM) end every command with one line.

A command module ``cli/<name>.py`` declares ``DESCRIPTION`` (optional), ``register(parser)`` (its flags
on the parser made here, with the one-line help of ``COMMAND_HELP``) and either ``run(args)`` or
sub-actions with their own handlers (``common.add_action``). The modules are looked up by name in
``COMMAND_HELP``, so the process environment is set before any of them (or torch) is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import typing
from collections.abc import Iterator, Sequence

from crossforget import __version__
from crossforget.core.errors import CrossforgetError

# Command -> one-line help, in the order `crossforget --help` lists them; each module uses its entry.
COMMAND_HELP = {
    "data": "preview a dataset or print its label statistics",
    "train": "train a hashing model, one checkpoint per bit length",
    "evaluate": "mAP on D_r and D_f, I2T and T2I, for one or more checkpoints",
    "unlearn": "forget classes from a checkpoint with PPP, SSD or a baseline",
    "demo": "compare Original, Bad, Retrain, Finetune, SSD and PPP (Table 2)",
    "features": "cache CLIP features (train hash heads on them on a CPU)",
    "table1": "classification: Original, Bad, Retrain, Finetune, Bad Teacher, Amnesiac, SSD, PPP",
    "tune": "search PPP or SSD hyperparameters with Optuna (TPE) on a validation split",
    "sweep": "multi-class forgetting (Fig. 3) or forget sample sizes (Fig. 4)",
    "plot": "figures from checkpoints (density of reduced features, Fig. 1)",
    "report": "gather result folders into report.md and a static report.html",
    "index": "build a live FAISS index from a checkpoint (index build), or describe one (index info)",
    "search": "top-k items of a live index for a sentence or an image",
    "forget": "a forget request on a live index: unlearn, delete, re-encode, swap, audit",
    "audit": "list, show or verify the audit log of a live index",
    "serve": "HTTP API of a live index (search, forget jobs, audit)",
}
COMMAND_MODULES = tuple(COMMAND_HELP)
# Commands that run under `torchrun --nproc-per-node N` (docs/distributed.md); the others refuse it.
DISTRIBUTED_COMMANDS = ("train", "evaluate", "unlearn", "demo", "features", "table1")
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up (temporary folders removed) runs."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one ``error:`` line (exit 2), like every other input error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: the first word that is not an option (the top level has only
    --help and --version, which take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def set_program_environment() -> None:
    """Process-wide settings the libraries read when they load, so set where the program starts
    (before a command module imports torch): no OpenMP spinning on shared cores, no hub downloads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _register(commands: argparse._SubParsersAction, name: str) -> None:
    """Import command ``name``'s module and let it add its flags to its parser."""
    module = importlib.import_module(f"crossforget.cli.{name}")
    parser = commands.add_parser(
        name, help=COMMAND_HELP[name], description=getattr(module, "DESCRIPTION", None)
    )
    module.register(parser)
    if hasattr(module, "run"):
        parser.set_defaults(handler=module.run)


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The parser with ``command`` fully registered and the others listed by name and help only
    ("*": all of them, e.g. for documentation)."""
    parser = _Parser(
        prog="crossforget",
        description="Selective class unlearning for cross-modal hashing retrieval (PPP, SSD and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"crossforget {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMAND_HELP.items():
        if command in ("*", name):
            _register(commands, name)
        else:
            commands.add_parser(name, help=help_text)
    return parser


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` for the duration of a command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _torchrun_world() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


@contextlib.contextmanager
def _as_rank(args: argparse.Namespace) -> Iterator[None]:
    """Under torchrun: join the process group for the command; ranks other than 0 print nothing
    (rank 0 prints the logs and tables), except their error if they fail. Elsewhere: nothing."""
    if _torchrun_world() <= 1:
        yield
        return
    if args.command not in DISTRIBUTED_COMMANDS:
        raise CrossforgetError(
            f"`crossforget {args.command}` runs as one process; start it without torchrun (torchrun "
            f"runs {', '.join(DISTRIBUTED_COMMANDS)})"
        )
    import torch

    from crossforget.core import distributed
    from crossforget.core.device import resolve_device

    # The backend follows where the command computes: nccl for --device on a GPU, gloo on the CPU
    # (table1's classifiers have no --device: they run on the CPU).
    device = resolve_device(args.device) if hasattr(args, "device") else torch.device("cpu")
    with distributed.session(device):
        if distributed.is_main():
            yield
            return
        streams = sys.stdout, sys.stderr
        with open(os.devnull, "w") as quiet:
            sys.stdout = sys.stderr = quiet
            try:
                yield
            finally:
                sys.stdout, sys.stderr = streams


def _report_failure(exc: BaseException, message: str) -> None:
    """Print the one-line error; under torchrun also name the rank and leave the message in torchrun's
    error file, so the launcher's summary shows it."""
    world = _torchrun_world()
    if world > 1:
        message = f"rank {os.environ.get('RANK', '?')} of {world}: {message}"
        if os.environ.get("TORCHELASTIC_ERROR_FILE"):
            from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

            ErrorHandler().record_exception(CrossforgetError(message))
    print("error: " + message, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    set_program_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    with _sigterm_as_exception():
        try:
            args = build_parser(_command_of(argv)).parse_args(argv)
            from crossforget.core.memory import keep_freed_memory

            keep_freed_memory()  # process-wide, so here where the program starts (crossforget.core.memory)
            with _as_rank(args):
                return int(args.handler(args) or 0)
        except CrossforgetError as exc:
            _report_failure(exc, " ".join(str(exc).splitlines()))
            return 2
        except Exception as exc:
            if _torchrun_world() > 1 and os.environ.get("TORCHELASTIC_ERROR_FILE"):
                from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

                ErrorHandler().record_exception(exc)  # torchrun's summary shows this rank's traceback
            raise
        except Terminated:
            print("terminated (SIGTERM); nothing half-written was left behind", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            print("interrupted; nothing half-written was left behind", file=sys.stderr)
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
