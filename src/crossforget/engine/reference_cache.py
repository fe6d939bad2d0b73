"""Cache of trained reference models (Original, Retrain, shadow models), keyed by what changes them.

Training dominates the cost of a comparison; a second run reuses the checkpoints. One mechanism serves
every track: the track names the folder (from ``cache_key`` of a description of the training) and says
how to load, save, build and complete (e.g. attach a stored Fisher to) its checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from crossforget import __version__
from crossforget.core import distributed
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_directory

T = TypeVar("T")


def cache_key(description: dict) -> str:
    """A short hash of everything that changes a trained model, and the package version."""
    text = json.dumps({**description, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_reference(
    folder: Path,
    load: Callable[[Path], T],
    save: Callable[[Path, T], object],
    build: Callable[[], T],
    complete: Callable[[T], bool] = lambda _: False,
) -> tuple[T, bool]:
    """The checkpoint in ``folder``, or ``build()`` stored there; returns (checkpoint, was_cached).

    ``load`` raises ``CrossforgetError`` for a damaged or stale entry, which is rebuilt. ``complete``
    adds what a run needs beyond the training (True when it added something): the entry is then
    stored again. Entries are written whole or not at all, whatever kills the run.
    """
    found = None
    if (folder / "config.json").is_file():
        try:
            found = load(folder)
        except CrossforgetError:
            found = None
    # Under torchrun every rank must take the same branch (building trains on all of them).
    usable = f"whether cache entry {folder} is usable (give every node the same cache folder)"
    was_cached = distributed.agree(found is not None, usable)
    saved = found if found is not None else build()
    if not complete(saved) and was_cached:
        return saved, True
    with atomic_directory(folder, overwrite=True) as tmp:
        save(tmp, saved)
    return saved, was_cached
