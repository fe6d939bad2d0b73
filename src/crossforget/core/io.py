"""Atomic writes: a result file is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from crossforget.core.errors import CrossforgetError

# The two files that make a folder a checkpoint (crossforget.core.checkpoint reads and writes them).
CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS = "config.json", "weights.safetensors"

# Under torchrun, ranks other than 0 build each atomic_directory in a private scratch folder (listed
# here while open) and write nowhere else; rank 0 alone writes results, checkpoints and caches.
_SCRATCH: list[Path] = []


def _rank_zero() -> bool:
    """True unless this process is a rank other than 0 of a torch.distributed group."""
    if "torch.distributed" not in sys.modules:  # no process group without torch.distributed
        return True
    from crossforget.core.distributed import is_main

    return is_main()


def _barrier() -> None:
    if "torch.distributed" in sys.modules:
        from crossforget.core.distributed import barrier

        barrier()


def may_write(path: str | Path) -> bool:
    """Whether this process writes ``path``: a single process or rank 0 always; other ranks only
    inside their private stand-in of an ``atomic_directory``."""
    if _rank_zero():
        return True
    target = Path(path).absolute()
    return any(target == scratch or scratch in target.parents for scratch in _SCRATCH)


def _temporary_prefix(path: Path) -> str:
    """Temporaries are named .NAME.PID.RANDOM.tmp so a later run can tell those of dead runs."""
    return f".{path.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove what killed runs (SIGKILL, power loss) left beside ``path``: temporary files and folders
    whose owner process is gone, and the backup of a replaced folder. Says so on stderr; returns them.

    A backup ``.NAME.old`` is only left when a run died between moving the old result aside and moving
    the new one in; with ``path`` missing it is the complete old result and is put back.
    """
    path = Path(path)
    if not path.parent.is_dir() or not _rank_zero():
        return []
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[^/]*\.tmp$")
    removed = []
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
        print(f"removed {entry}, left by a run that was killed (pid {match.group(1)})", file=sys.stderr)
    backup = path.with_name(f".{path.name}.old")
    if backup.is_dir() and not path.exists():
        os.replace(backup, path)
        print(f"restored {path} from {backup}, left by a run that was killed", file=sys.stderr)
    elif backup.is_dir():
        shutil.rmtree(backup, ignore_errors=True)
        removed.append(backup)
        print(f"removed {backup}, left by a run that was killed", file=sys.stderr)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over the target (rank 0 only, see
    ``may_write``)."""
    path = Path(path)
    if not may_write(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask (mkstemp creates 0600 files; results should get the usual permissions)."""
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_checkpoint_folder(path: Path) -> bool:
    return (path / CHECKPOINT_CONFIG).is_file() and (path / CHECKPOINT_WEIGHTS).is_file()


def guard_output(
    out: str | Path,
    inputs: Iterable[tuple[str, str | Path | None]],
    flag: str = "--out",
    allow_equal: bool = False,
    allow_inside: bool = False,
) -> None:
    """Refuse an output that equals, contains or sits inside one of the command's inputs.

    ``--overwrite`` replaces the output folder wholesale, so an output that equals or contains an input
    would delete it, and one inside an input checkpoint would later be read as part of it. ``inputs`` are
    (what, path) pairs such as ("--checkpoint", path); None entries are skipped. An output inside any
    checkpoint folder is refused too. ``allow_equal`` / ``allow_inside`` relax the rule for commands that
    only add files beside their input (``evaluate``) or skip their own output when reading (``report``).
    """
    target = Path(out).expanduser().resolve()
    for what, path in inputs:
        if path is None:
            continue
        source = Path(path).expanduser().resolve()
        if target == source and not allow_equal:
            problem = "is"
        elif source in target.parents and not allow_inside:
            problem = "lies inside"
        elif target in source.parents:
            problem = "contains"
        else:
            continue
        raise CrossforgetError(
            f"{flag} {out} {problem} the input {what} {path}; the input is never modified or "
            f"deleted, so choose an {flag} outside it"
        )
    for folder in target.parents:
        if is_checkpoint_folder(folder):
            raise CrossforgetError(
                f"{flag} {out} lies inside the checkpoint folder {folder}; later runs would read it as "
                f"part of that checkpoint, so choose an {flag} outside it"
            )


def check_writable(path: str | Path, flag: str = "--out", kind: str = "folder", into: bool = False) -> None:
    """Fail now, not after the work, when ``path`` cannot be written.

    ``kind``: "folder" or "file" (what ``path`` must be if it exists). Results are created in the parent
    folder and renamed into place, unless ``into`` (files written inside the existing folder ``path``),
    so that is the folder probed: its nearest existing ancestor must be a writable folder. What killed
    runs left beside ``path`` is removed first (``remove_stale_temporaries``).
    """
    path = Path(path)
    if not _rank_zero():  # other ranks never touch the output; rank 0's check fails the whole run
        return
    remove_stale_temporaries(path)
    if path.exists() and kind == "file" and path.is_dir():
        raise CrossforgetError(f"{flag} {path} is a folder; name a file to write, e.g. {path / 'out.png'}")
    if path.exists() and kind == "folder" and not path.is_dir():
        raise CrossforgetError(f"{flag} {path} exists and is not a folder; choose another {flag}")
    start = path if into else path.parent
    existing = next((p for p in (start, *start.parents) if p.exists()), start)
    if not existing.is_dir():
        raise CrossforgetError(f"{flag} {path} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise CrossforgetError(
            f"{flag} {path} cannot be written ({exc.strerror} in {existing}); choose a writable location"
        ) from None


def prepare_output_dir(path: str | Path, overwrite: bool, flag: str = "--out") -> Path:
    """Refuse to write into a non-empty folder unless the user asked to overwrite it, or where nothing
    can be written."""
    path = Path(path)
    check_writable(path, flag)
    if not _rank_zero():
        return path
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise CrossforgetError(f"output folder {path} is not empty; pass --overwrite or choose another --out")
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and move it into place only when the block succeeds.

    A failed run therefore leaves nothing behind at ``path``. Under torchrun the folder is moved into
    place after a barrier (a rank that failed never reaches it, and torchrun then stops the others);
    ranks other than 0 build theirs in a private scratch folder outside ``path``, removed at the end.
    """
    path = Path(path)
    if not _rank_zero():
        scratch = Path(tempfile.mkdtemp(prefix="crossforget-rank-"))
        _SCRATCH.append(scratch)
        try:
            yield scratch
            _barrier()
        finally:
            _SCRATCH.remove(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
        return
    prepare_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; results get the usual permissions
    try:
        yield tmp
        _barrier()  # every rank has finished: publish only now
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        backup = path.with_name(f".{path.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(path, backup)
        os.replace(tmp, path)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, path)
