"""Typed per-seed results of a runner and the summaries every retrieval experiment reports.

``SeedResults`` keeps three trees of the same shape (scores, timings, diagnostics), keyed by the path
an experiment gives each run (e.g. method / bits / seed). The summaries read the retrieval layout
``per_seed[method][bits][seed][direction][metric]`` (fractions) and report percentages:
``summarise`` (per setting), ``overall`` (per seed, mean over bits x directions), ``deltas`` (|Δ| to
the reference columns) and ``paired_difference`` (method - baseline at each common seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crossforget.engine.statistics import summarise as summarise_values
from crossforget.metrics.keys import DELTA_SIDES, DIRECTIONS, RETRIEVAL, Metric


@dataclass
class Column:
    """One method at one seed: its scores, timings, diagnostics and a note on what came from a cache."""

    scores: dict
    timings: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    note: str = ""


@dataclass
class SeedResults:
    """``per_seed``, ``timings`` and ``diagnostics`` trees, filled one column at a time."""

    per_seed: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    def add(self, path: Sequence[str], column: Column) -> None:
        """Store ``column`` under ``path`` (the last element is the seed) in each tree."""
        for tree, value in (
            (self.per_seed, column.scores),
            (self.timings, column.timings),
            (self.diagnostics, column.diagnostics),
        ):
            for key in path[:-1]:
                tree = tree.setdefault(key, {})
            tree[path[-1]] = value

    def as_dict(self) -> dict:
        return {"per_seed": self.per_seed, "timings": self.timings, "diagnostics": self.diagnostics}


def seed_summary(values: Sequence[float]) -> dict:
    """Mean, sample std (0 for a single run), n and the 95% Student-t interval (null below two runs).

    Built on ``statistics.summarise`` so every runner agrees; null rather than NaN keeps the JSON strict.
    """
    s = summarise_values(values)
    spread = s.n > 1
    return {
        "mean": s.mean,
        "std": 0.0 if s.n == 1 else s.std,
        "n": s.n,
        "ci_low": s.ci_low if spread else None,
        "ci_high": s.ci_high if spread else None,
    }


def summarise(per_seed: dict, metrics: Sequence[Metric] = RETRIEVAL) -> dict:
    """``seed_summary`` per method, bits-direction and metric, in %."""
    summary: dict = {}
    for method, by_bits in per_seed.items():
        for bits, by_seed in by_bits.items():
            for direction in DIRECTIONS:
                for metric in metrics:
                    entry = seed_summary([100 * s[direction][metric] for s in by_seed.values()])
                    summary.setdefault(method, {}).setdefault(f"{bits}-{direction}", {})[metric] = entry
    return summary


def overall(by_method: dict, metrics: Sequence[Metric]) -> dict:
    """Per method and metric: each seed's mean over bits x directions (in %), summarised over seeds."""
    out: dict = {}
    for method, by_bits in by_method.items():
        seeds = list(next(iter(by_bits.values())))
        for metric in metrics:
            values = [
                100 * sum(by_bits[b][s][d][metric] for b in by_bits for d in DIRECTIONS) / (len(by_bits) * 2)
                for s in seeds
            ]
            out.setdefault(method, {})[metric] = {**seed_summary(values), "values": values}
    return out


def deltas(summary: dict) -> dict:
    """|Δ| per method: each side's metric against its reference column (percentage points)."""
    if any(metric.reference not in summary for _, metric in DELTA_SIDES):
        return {}
    out = {}
    for method, settings in summary.items():
        out[method] = {
            side: float(
                np.mean(
                    [
                        abs(v[metric]["mean"] - summary[metric.reference][k][metric]["mean"])
                        for k, v in settings.items()
                    ]
                )
            )
            for side, metric in DELTA_SIDES
        }
    return out


def paired_difference(per_seed: dict, method: str, baseline: str) -> dict:
    """``method - baseline`` seed by seed, in mAP points, with mean, std and the 95% t-interval.

    Paired because seed s draws the same forget sample in every sampled method (``forget_sample``),
    so the seed-to-seed spread of the sample cancels. ``settings``: per bits-direction and metric;
    ``delta``: each seed's |Δ| (against the deterministic Retrain and Original, as in ``deltas``)
    of ``method`` minus that of ``baseline`` (negative: ``method`` is closer), present when both
    references were run. Only seeds both methods ran at every bit length count.
    """
    first, second = per_seed[method], per_seed[baseline]
    bits = [b for b in first if b in second]
    seeds = sorted(set.intersection(*(set(first[b]) & set(second[b]) for b in bits)), key=int) if bits else []
    out: dict = {"method": method, "baseline": baseline, "seeds": [int(s) for s in seeds], "settings": {}}
    if not seeds:
        return out
    for b in bits:
        for direction in DIRECTIONS:
            out["settings"][f"{b}-{direction}"] = {
                metric: seed_summary(
                    [100 * (first[b][s][direction][metric] - second[b][s][direction][metric]) for s in seeds]
                )
                for metric in RETRIEVAL
            }
    if all(metric.reference in per_seed for _, metric in DELTA_SIDES):

        def seed_delta(runs: dict, s: str, metric: Metric) -> float:
            return float(
                np.mean(
                    [
                        abs(
                            runs[b][s][d][metric]
                            - next(iter(per_seed[metric.reference][b].values()))[d][metric]
                        )
                        for b in bits
                        for d in DIRECTIONS
                    ]
                )
            )

        out["delta"] = {
            side: seed_summary(
                [100 * (seed_delta(first, s, metric) - seed_delta(second, s, metric)) for s in seeds]
            )
            for side, metric in DELTA_SIDES
        }
    return out


def retrieval_line(scores: dict, metrics: Sequence[tuple[str, Metric]] = DELTA_SIDES) -> str:
    """``D_f 12.3/11.0 D_r 80.1/79.9`` (I2T/T2I, %) for a console line."""
    names = {"forget": "D_f", "retain": "D_r"}
    return " ".join(
        f"{names[side]} " + "/".join(f"{100 * scores[d][metric]:.1f}" for d in DIRECTIONS)
        for side, metric in metrics
    )
