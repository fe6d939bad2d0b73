"""The two-sided forgetting guard: check a candidate on held-out items and move the threshold until it
both forgets and keeps the retained classes.

A Fisher-dampening rule has one knob that decides how much of the model it touches: the selection
threshold alpha (an entry is dampened when I_f > alpha * I_r). Its right value depends on the request
(how many classes, how entangled they are with retained ones) and on the data, so a fixed default either
dampens too much (retrieval collapses) or too little (nothing is forgotten) on some requests. The guard
closes the loop: a ``RetentionProbe`` scores a candidate on held-out items (never the test queries), and
``guarded_search`` moves alpha geometrically, then bisects, within a bounded number of steps.

A candidate *keeps* when its retained score dropped by at most ``retain_budget`` points from the
original's, and *forgets* when its forget score is within ``forget_tolerance`` of the original's gap to
the floor (the score of a model that never learnt the class: chance mAP for retrieval, 0 for accuracy).
Dampened sets are nested in alpha (an entry selected at alpha is selected at every smaller alpha), so
both scores move monotonically with alpha up to probe noise, which is what makes bisection valid.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from torch import nn

from crossforget.core.errors import CrossforgetError

Side = Literal["none", "retain", "forget", "both"]


@dataclass(frozen=True)
class ProbeScores:
    """Held-out scores of one model, as fractions: retained items (higher is better) and forget items."""

    retain: float
    forget: float


@dataclass(frozen=True)
class RetentionProbe:
    """Scores models on held-out items. ``forget_floor``: the forget score of a model that never learnt
    the forget classes; ``description`` says which items, for the diagnostics."""

    score: Callable[[nn.Module], ProbeScores]
    forget_floor: float
    description: str


@dataclass(frozen=True)
class GuardSettings:
    """``retain_budget``: allowed drop of the retained score, in points (percent); ``forget_tolerance``:
    the fraction of the original's forget-score gap to the floor that may remain; ``max_steps``: probe
    evaluations at most (the first included); ``factor``: the geometric step of alpha before bisection."""

    retain_budget: float = 1.0
    forget_tolerance: float = 0.1
    max_steps: int = 8
    factor: float = 4.0

    def __post_init__(self) -> None:
        check_budget(self.retain_budget)
        if not (math.isfinite(self.forget_tolerance) and 0.0 <= self.forget_tolerance <= 1.0):
            raise CrossforgetError(
                f"forget_tolerance must be a number in [0, 1], got {self.forget_tolerance}"
            )
        if self.max_steps < 1:
            raise CrossforgetError(f"the guard needs at least one step, got max_steps={self.max_steps}")
        if not (math.isfinite(self.factor) and self.factor > 1.0):
            raise CrossforgetError(f"the guard's step factor must be a number > 1, got {self.factor}")


def check_budget(budget: float) -> None:
    """A retention budget is a finite number of points >= 0."""
    if not isinstance(budget, int | float) or not math.isfinite(budget) or budget < 0:
        raise CrossforgetError(
            f"--retain-budget must be a number of mAP/accuracy points >= 0 (e.g. 1.0), got {budget!r}"
        )


@dataclass
class GuardStep:
    """One probe evaluation: the threshold tried, the estimated drop (points) and forget score."""

    alpha: float
    retain_drop: float
    forget: float
    keeps: bool
    forgets: bool
    dampened: int


@dataclass
class GuardOutcome:
    """The accepted alpha and how it was found (the caller rebuilds its candidate).

    ``acted_on``: which side made the guard move alpha away from its start ("retain": too much damage,
    "forget": too little forgetting, "both", "none"); ``met``: whether the accepted candidate keeps and
    forgets."""

    alpha: float
    acted_on: Side
    met: bool
    original: ProbeScores
    forget_target: float
    steps: list[GuardStep] = field(default_factory=list)
    message: str = ""

    def diagnostics(self, settings: GuardSettings, probe: RetentionProbe) -> dict:
        return {
            "alpha": self.alpha,
            "acted_on": self.acted_on,
            "met": self.met,
            "message": self.message,
            "probe": probe.description,
            "settings": asdict(settings),
            "original": asdict(self.original),
            "forget_floor": probe.forget_floor,
            "forget_target": self.forget_target,
            "steps": [asdict(step) for step in self.steps],
        }


Candidate = Callable[[float], tuple[nn.Module, int]]


def guarded_search(
    build: Candidate,
    probe: RetentionProbe,
    original: nn.Module,
    alpha0: float,
    alpha_range: tuple[float, float],
    settings: GuardSettings,
) -> GuardOutcome:
    """Find an alpha whose candidate keeps and forgets, starting at ``alpha0``.

    ``build(alpha)`` returns (candidate model, number of dampened entries); it may rebuild one model in
    place, since a candidate is scored before the next is built. ``original`` is scored first.
    ``alpha_range``: the guard never goes below its low end; above its high end nothing is dampened.
    The search first steps alpha by ``settings.factor`` in the direction the failing side asks for, then
    bisects (in log alpha) between the last failing and the first passing value, within ``max_steps``.
    """
    base = probe.score(original)
    gap = max(base.forget - probe.forget_floor, 0.0)
    target = probe.forget_floor + settings.forget_tolerance * gap
    steps: list[GuardStep] = []

    def evaluate(alpha: float) -> GuardStep:
        model, dampened = build(alpha)
        scores = probe.score(model)
        drop = 100.0 * (base.retain - scores.retain)
        step = GuardStep(
            alpha, drop, scores.forget, drop <= settings.retain_budget, scores.forget <= target, dampened
        )
        steps.append(step)
        return step

    low, high = alpha_range
    low, high = min(low, alpha0), max(high, alpha0)
    first = evaluate(alpha0)
    side: Side = "none"
    if not first.keeps:
        side = "retain" if first.forgets else "both"
        _walk(evaluate, steps, settings, alpha0, high, up=True, passes=lambda s: s.keeps)
    elif not first.forgets:
        side = "forget"
        _walk(evaluate, steps, settings, alpha0, low, up=False, passes=lambda s: s.forgets)
    chosen = _choose(steps)
    met = chosen.keeps and chosen.forgets
    message = _message(chosen, met, settings, base, target)
    if not met:
        warnings.warn(f"forgetting guard: {message}", RuntimeWarning, stacklevel=2)
    return GuardOutcome(chosen.alpha, side, met, base, target, steps, message)


def _walk(
    evaluate: Callable[[float], GuardStep],
    steps: list[GuardStep],
    settings: GuardSettings,
    start: float,
    limit: float,
    up: bool,
    passes: Callable[[GuardStep], bool],
) -> None:
    """Step alpha geometrically towards ``limit`` until the failing criterion passes; if the other one
    then fails, bisect (in log alpha) between the last failing and the first passing value, looking for a
    candidate that meets both. A candidate that meets both ends the walk: moving closer to the boundary
    would only trade one criterion's margin for the other's."""
    failing, alpha = start, start
    while True:
        if len(steps) >= settings.max_steps or alpha == limit:
            return
        alpha = min(alpha * settings.factor, limit) if up else max(alpha / settings.factor, limit)
        step = evaluate(alpha)
        if passes(step):
            break
        failing = alpha
    passing = alpha
    while not (step.keeps and step.forgets) and len(steps) < settings.max_steps:
        middle = math.sqrt(failing * passing)
        if math.isclose(middle, failing, rel_tol=1e-3) or math.isclose(middle, passing, rel_tol=1e-3):
            return
        step = evaluate(middle)
        if passes(step):
            passing = middle
        else:
            failing = middle


def _choose(steps: list[GuardStep]) -> GuardStep:
    """Both criteria met: the largest alpha (least intervention). Otherwise, among candidates within the
    budget the one that forgets most; with none within budget, the one that damages least."""
    met = [s for s in steps if s.keeps and s.forgets]
    if met:
        return max(met, key=lambda s: s.alpha)
    kept = [s for s in steps if s.keeps]
    if kept:
        return min(kept, key=lambda s: (s.forget, -s.alpha))
    return min(steps, key=lambda s: (s.retain_drop, -s.alpha))


def _message(step: GuardStep, met: bool, settings: GuardSettings, base: ProbeScores, target: float) -> str:
    detail = (
        f"alpha {step.alpha:.4g}: held-out retained score drop {step.retain_drop:.2f} points "
        f"(budget {settings.retain_budget:g}), forget score {100 * step.forget:.2f} % "
        f"(original {100 * base.forget:.2f} %, target <= {100 * target:.2f} %)"
    )
    if met:
        return detail
    if step.keeps:
        return (
            f"no setting both forgets and keeps within {settings.max_steps} steps; "
            f"retention kept, forgetting INCOMPLETE: {detail}"
        )
    return (
        f"no setting keeps the retained classes within the budget in {settings.max_steps} steps; "
        f"returning the least damaging one: {detail}"
    )
