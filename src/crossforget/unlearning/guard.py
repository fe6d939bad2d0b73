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

On a multi-class request one alpha can be wrong for some of the classes: one class is forgotten at a
threshold where another is not, and lowering the common alpha far enough for the second damages the
retained classes. When the common search ends kept but not forgotten, and the probe scores each forget
class on its own, a *per-class refinement* lowers the threshold of one unforgotten class at a time
(an entry is dampened when it serves any forget class c more than c's threshold allows), with the
same geometric steps and bisection, within ``class_steps`` further probe evaluations.
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
    per_class: tuple[float, ...] = ()  # the forget score of each forget class alone; () = not scored


@dataclass(frozen=True)
class RetentionProbe:
    """Scores models on held-out items. ``forget_floor``: the forget score of a model that never learnt
    the forget classes; ``class_floors``: the same for each forget class alone, in request order, when
    the probe scores classes separately; ``description`` says which items, for the diagnostics."""

    score: Callable[[nn.Module], ProbeScores]
    forget_floor: float
    description: str
    class_floors: tuple[float, ...] = ()


@dataclass(frozen=True)
class GuardSettings:
    """``retain_budget``: allowed drop of the retained score, in points (percent); ``forget_tolerance``:
    the fraction of the original's forget-score gap to the floor that may remain; ``max_steps``: probe
    evaluations at most (the first included); ``factor``: the geometric step of alpha before bisection;
    ``class_steps``: probe evaluations the per-class refinement may add (0 turns it off)."""

    retain_budget: float = 1.0
    forget_tolerance: float = 0.1
    max_steps: int = 8
    factor: float = 4.0
    class_steps: int = 8

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
        if self.class_steps < 0:
            raise CrossforgetError(
                f"the per-class refinement's step count must be >= 0 (0 = off), got {self.class_steps}"
            )


def check_budget(budget: float) -> None:
    """A retention budget is a finite number of points >= 0."""
    if not isinstance(budget, int | float) or not math.isfinite(budget) or budget < 0:
        raise CrossforgetError(
            f"--retain-budget must be a number of mAP/accuracy points >= 0 (e.g. 1.0), got {budget!r}"
        )


@dataclass
class GuardStep:
    """One probe evaluation: the threshold tried, the estimated drop (points) and forget score.

    A refinement step tries one threshold per forget class (``alphas``, request order); its ``alpha`` is
    the smallest of them. ``forget_per_class``: each class's forget score, when the probe scores them."""

    alpha: float
    retain_drop: float
    forget: float
    keeps: bool
    forgets: bool
    dampened: int
    forget_per_class: tuple[float, ...] = ()
    alphas: tuple[float, ...] | None = None

    def record(self) -> dict:
        """The step for ``unlearn.json``, without the per-class fields where they do not apply."""
        fields = asdict(self)
        if not self.forget_per_class:
            del fields["forget_per_class"]
        if self.alphas is None:
            del fields["alphas"]
        return fields


@dataclass
class GuardOutcome:
    """The accepted alpha and how it was found (the caller rebuilds its candidate).

    ``acted_on``: which side made the guard move alpha away from its start ("retain": too much damage,
    "forget": too little forgetting, "both", "none"); ``met``: whether the accepted candidate keeps and
    forgets; ``alphas``: the per-class thresholds when the refinement's candidate was accepted (else
    None: ``alpha`` for every entry)."""

    alpha: float
    acted_on: Side
    met: bool
    original: ProbeScores
    forget_target: float
    steps: list[GuardStep] = field(default_factory=list)
    message: str = ""
    alphas: tuple[float, ...] | None = None
    class_targets: tuple[float, ...] = ()
    accepted: GuardStep | None = None

    def diagnostics(self, settings: GuardSettings, probe: RetentionProbe) -> dict:
        original = asdict(self.original)
        if not self.original.per_class:
            del original["per_class"]
        record = {
            "alpha": self.alpha,
            "acted_on": self.acted_on,
            "met": self.met,
            "message": self.message,
            "probe": probe.description,
            "settings": asdict(settings),
            "original": original,
            "forget_floor": probe.forget_floor,
            "forget_target": self.forget_target,
            "steps": [step.record() for step in self.steps],
        }
        if self.class_targets:
            record.update(class_floors=list(probe.class_floors), class_targets=list(self.class_targets))
        if self.alphas is not None:
            record["alphas"] = list(self.alphas)
        return record


Candidate = Callable[[float], tuple[nn.Module, int]]
ClasswiseCandidate = Callable[[tuple[float, ...]], tuple[nn.Module, int]]


def guarded_search(
    build: Candidate,
    probe: RetentionProbe,
    original: nn.Module,
    alpha0: float,
    alpha_range: tuple[float, float],
    settings: GuardSettings,
    build_per_class: ClasswiseCandidate | None = None,
    baseline: ProbeScores | None = None,
    warn: bool = True,
) -> GuardOutcome:
    """Find an alpha whose candidate keeps and forgets, starting at ``alpha0``.

    ``build(alpha)`` returns (candidate model, number of dampened entries); it may rebuild one model in
    place, since a candidate is scored before the next is built. ``original`` is scored first.
    ``alpha_range``: the guard never goes below its low end; above its high end nothing is dampened.
    The search first steps alpha by ``settings.factor`` in the direction the failing side asks for, then
    bisects (in log alpha) between the last failing and the first passing value, within ``max_steps``.
    ``build_per_class(alphas)``: the candidate with one threshold per forget class (request order); with
    it, and a probe that scores each class, a search that ends kept but not forgotten is refined per
    class (module docstring). ``baseline``: the scores every drop and target are measured against,
    instead of ``original``'s (a later round of dampening keeps the first model's reference, so its
    budget is cumulative). ``warn``: warn here when no candidate meets both (else the caller does).
    """
    base = baseline if baseline is not None else probe.score(original)
    target = _target(base.forget, probe.forget_floor, settings)
    per_class = len(base.per_class) >= 2 and len(probe.class_floors) == len(base.per_class)
    class_targets = (
        tuple(_target(s, f, settings) for s, f in zip(base.per_class, probe.class_floors, strict=True))
        if per_class
        else ()
    )
    steps: list[GuardStep] = []

    def evaluate(alpha: float | tuple[float, ...]) -> GuardStep:
        vector = isinstance(alpha, tuple)
        model, dampened = build_per_class(alpha) if vector else build(alpha)
        scores = probe.score(model)
        drop = 100.0 * (base.retain - scores.retain)
        step = GuardStep(
            min(alpha) if vector else alpha,
            drop,
            scores.forget,
            drop <= settings.retain_budget,
            scores.forget <= target,
            dampened,
            scores.per_class if per_class else (),
            alpha if vector else None,
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
    if per_class and build_per_class is not None and chosen.keeps and not chosen.forgets:
        _refine(evaluate, steps, settings, chosen, class_targets, low)
        chosen = _choose(steps)
    met = chosen.keeps and chosen.forgets
    message = _message(chosen, met, settings, base, target, len(steps))
    if not met and warn:
        warnings.warn(f"forgetting guard: {message}", RuntimeWarning, stacklevel=2)
    return GuardOutcome(
        chosen.alpha, side, met, base, target, steps, message, chosen.alphas, class_targets, chosen
    )


def _target(score: float, floor: float, settings: GuardSettings) -> float:
    """The forget score that counts as forgotten: the floor plus the tolerated share of the gap."""
    return floor + settings.forget_tolerance * max(score - floor, 0.0)


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


def _refine(
    evaluate: Callable[[tuple[float, ...]], GuardStep],
    steps: list[GuardStep],
    settings: GuardSettings,
    start: GuardStep,
    targets: tuple[float, ...],
    low: float,
) -> None:
    """Lower the threshold of each unforgotten class in turn (the furthest from its target first) while
    the candidate keeps, until the request is forgotten or ``class_steps`` evaluations are spent."""
    alphas = [start.alpha] * len(targets)
    current, end = start, len(steps) + settings.class_steps
    for c in sorted(range(len(targets)), key=lambda c: targets[c] - start.forget_per_class[c]):
        if current.forgets or len(steps) >= end:
            return
        if current.forget_per_class[c] <= targets[c]:
            continue
        current = _lower_class(evaluate, steps, settings, alphas, c, current, targets[c], low, end)


def _lower_class(
    evaluate: Callable[[tuple[float, ...]], GuardStep],
    steps: list[GuardStep],
    settings: GuardSettings,
    alphas: list[float],
    c: int,
    current: GuardStep,
    target: float,
    low: float,
    end: int,
) -> GuardStep:
    """Step class ``c``'s threshold down geometrically, then bisect between the lowest value that keeps
    and the highest that does not; leave ``alphas[c]`` at the lowest value that keeps and return its
    step (``current`` when none was found)."""
    keep_alpha, fail_alpha = alphas[c], None
    while len(steps) < end:
        if fail_alpha is None:
            if keep_alpha <= low:
                break
            alpha = max(keep_alpha / settings.factor, low)
        else:
            alpha = math.sqrt(keep_alpha * fail_alpha)
            if math.isclose(alpha, keep_alpha, rel_tol=1e-3) or math.isclose(alpha, fail_alpha, rel_tol=1e-3):
                break
        step = evaluate(tuple(alpha if i == c else a for i, a in enumerate(alphas)))
        if not step.keeps:
            fail_alpha = alpha
            continue
        keep_alpha, current = alpha, step
        if step.forgets or step.forget_per_class[c] <= target:
            break
    alphas[c] = keep_alpha
    return current


def _choose(steps: list[GuardStep]) -> GuardStep:
    """Both criteria met: the least intervention (fewest dampened entries, then the largest alpha).
    Otherwise, among candidates within the budget the one that forgets most; with none within budget,
    the one that damages least. (Dampened sets are nested in alpha, so on a common-alpha search the
    fewest dampened entries is the largest alpha.)"""
    met = [s for s in steps if s.keeps and s.forgets]
    if met:
        return min(met, key=lambda s: (s.dampened, -s.alpha))
    kept = [s for s in steps if s.keeps]
    if kept:
        return min(kept, key=lambda s: (s.forget, s.dampened, -s.alpha))
    return min(steps, key=lambda s: (s.retain_drop, s.dampened, -s.alpha))


def _message(
    step: GuardStep, met: bool, settings: GuardSettings, base: ProbeScores, target: float, tried: int
) -> str:
    where = (
        f"per-class alphas {', '.join(f'{a:.4g}' for a in step.alphas)}"
        if step.alphas is not None
        else f"alpha {step.alpha:.4g}"
    )
    detail = (
        f"{where}: held-out retained score drop {step.retain_drop:.2f} points "
        f"(budget {settings.retain_budget:g}), forget score {100 * step.forget:.2f} % "
        f"(original {100 * base.forget:.2f} %, target <= {100 * target:.2f} %)"
    )
    if met:
        return detail
    if step.keeps:
        return (
            f"no setting both forgets and keeps in {tried} probe evaluations; "
            f"retention kept, forgetting INCOMPLETE: {detail}"
        )
    return (
        f"no setting keeps the retained classes within the budget in {tried} probe evaluations; "
        f"returning the least damaging one: {detail}"
    )
