"""The one runner loop: methods x seeds -> typed results, timed and reported one column at a time.

Every experiment (Table 1, Table 2, the sweeps) runs its columns through ``run_columns``: the order is
``plan``'s (methods in the given order, deterministic ones once at the reference seed, the others once
per seed), so the random draws and cache reads happen in the same order whatever the experiment. What
differs between tasks (how a column is made and scored, where its result goes) is passed in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Sequence

from crossforget.engine.results import Column, SeedResults

Run = tuple[str, int]
Report = Callable[[str, int, Column, float], None]


def plan(
    methods: Sequence[str], seeds: Sequence[int], deterministic: Collection[str], reference_seed: int
) -> list[Run]:
    """(method, seed) in run order: a deterministic method once at ``reference_seed``, others per seed."""
    return [(m, s) for m in methods for s in ([reference_seed] if m in deterministic else list(seeds))]


def run_columns(
    results: SeedResults,
    runs: Sequence[Run],
    column: Callable[[str, int], Column],
    path: Callable[[str, int], Sequence[str]],
    report: Report | None = None,
    wall: str | None = None,
) -> None:
    """Make every column of ``runs`` in order and store it in ``results`` under ``path(method, seed)``.

    ``wall``: also record the seconds a column took (making and scoring it) under this timing key;
    ``report`` sees each column and its seconds (the console line).
    """
    for method, seed in runs:
        started = time.perf_counter()
        outcome = column(method, seed)
        seconds = time.perf_counter() - started
        if wall is not None:
            outcome = dataclasses.replace(outcome, timings={**outcome.timings, wall: seconds})
        results.add(path(method, seed), outcome)
        if report is not None:
            report(method, seed, outcome, seconds)
