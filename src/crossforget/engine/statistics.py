"""Summaries over seeds: mean, sample standard deviation and a Student-t confidence interval.

Every runner reports through ``summarise`` so that tables and figures agree on the statistics, and
keeps the per-seed values next to them so any other statistic can be recomputed from the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from crossforget.core.errors import CrossforgetError


@dataclass(frozen=True)
class Summary:
    """``std`` is the sample standard deviation (ddof=1); with a single value it and the interval are NaN.

    NaN inputs (e.g. the accuracy of an empty set) are left out; ``n`` counts the values used.
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float
    values: tuple[float, ...]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["values"] = list(self.values)
        return out

    def scaled(self, factor: float) -> Summary:
        """The same summary in other units (e.g. x100 for percentages)."""
        return Summary(
            self.mean * factor,
            self.std * abs(factor),
            *sorted((self.ci_low * factor, self.ci_high * factor)),
            self.n,
            self.confidence,
            tuple(v * factor for v in self.values),
        )


def summarise(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std and the two-sided ``confidence`` interval mean +- t_{n-1} * std / sqrt(n)."""
    if not 0.0 < confidence < 1.0:
        raise CrossforgetError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    kept = [float(v) for v in values if not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return Summary(nan, nan, nan, nan, 0, confidence, tuple(float(v) for v in values))
    array = np.asarray(kept, dtype=np.float64)
    mean = float(array.mean())
    if n == 1:
        return Summary(mean, float("nan"), float("nan"), float("nan"), 1, confidence, tuple(kept))
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, mean - half, mean + half, n, confidence, tuple(kept))


def format_summary(summary: Summary, digits: int = 2) -> str:
    """``mean ± std`` (just the mean for a single value, ``n/a`` without values)."""
    if summary.n == 0:
        return "n/a"
    if summary.n == 1:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f}"
