"""Hyperparameter search for PPP and SSD with Optuna (TPE), as the paper tunes alpha, tau, lambda, lambda_max.

The objective (lower is better) is measured on the validation split (``validation.py``), never on
the query set the tables report. For one seed s of the sampled method:

    o_s = mean over bit lengths b and directions d of
          |D_f mAP(method) - D_f mAP(Retrain)| + |D_r mAP(method) - D_r mAP(Original)|   (mAP points)

with D_f judged by forget-label relevance (the table's primary metric); the objective is the mean of
o_s over the seeds. Steps are (seed, bit length) pairs: after each one the trial reports the running
mean, so the median pruner can stop a hopeless trial before its last step.

Studies live in an Optuna storage (an SQL URL such as ``sqlite:///runs/optuna.db``): an interrupted
study resumes where it stopped, and several workers may share one study. Heartbeats mark a trial
whose worker died as failed, and it is retried once with the same parameters.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from rich.console import Console

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_json, atomic_write_text
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.splits import RetrievalSplit
from crossforget.data.validation import validation_split
from crossforget.engine.results import seed_summary
from crossforget.metrics.keys import DIRECTIONS, PRIMARY_FORGET, RETAIN
from crossforget.reporting.figures import tuning_chart
from crossforget.reporting.tables import csv_table, markdown_table
from crossforget.tasks.hashing.columns import OriginalCheckpoints, column_scores, run_column
from crossforget.tasks.hashing.task import run_method, store_for
from crossforget.unlearning.methods import (
    Dimension,
    create_method,
    method_info,
    method_options,
    tunable_methods,
    validate_options,
)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 180


def search_space(
    method: str, fixed: dict[str, Any] | None = None, ranges: dict[str, tuple[float, float]] | None = None
) -> dict[str, Dimension]:
    """The method's default space minus ``fixed`` options, with ``ranges`` replacing bounds."""
    tunable = tunable_methods()
    if method not in tunable:
        raise CrossforgetError(f"tuning supports {', '.join(tunable)}, not {method!r}")
    space = dict(method_info(method).search_space)
    for name in [*(fixed or {}), *(ranges or {})]:
        if name not in space:
            raise CrossforgetError(
                f"{method} has no tuned option {name!r}; tuned options: {', '.join(space)}"
            )
    for name, (low, high) in (ranges or {}).items():
        space[name] = Dimension(space[name].kind, low, high)
    for name in fixed or {}:
        space.pop(name)
    return space


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats; any failure to open it is one line naming the URL.

    The folder of a ``sqlite:///`` file is created, so the default ``runs/optuna.db`` works at once.
    """
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        target = Path(url.removeprefix("sqlite:///"))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CrossforgetError(f"cannot open --storage {url}: {exc.strerror} ({target.parent})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Optuna >= 4.9 names the retry of stale trials differently; older versions take the other.
            fresh = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            retry = (
                {"heartbeat_stale_trial_callback": fresh(max_retry=1)}
                if fresh is not None
                else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
            )
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS, **retry
            )
    except Exception as exc:  # SQLAlchemy raises many types; all mean "cannot open this URL"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CrossforgetError(
            f"cannot open --storage {url}: {reason} (use e.g. sqlite:///runs/optuna.db)"
        ) from exc


def study_name_for(setup: dict) -> str:
    """A readable name plus a digest of everything that makes two studies comparable."""
    digest = hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:10]
    forget = "+".join(setup.get("forget", [])).replace(" ", "_")
    return (
        f"{setup.get('method', 'study')}-{forget}-{digest}" if forget else f"{setup.get('method')}-{digest}"
    )


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


Steps = Callable[[dict[str, Any], Callable[[str, Any], None]], Iterator[float]]


def sampler_seed_for(sampler_seed: int, offset: int) -> int:
    """The TPE seed of a worker joining a study that holds ``offset`` trials.

    A hash, not ``sampler_seed + offset``: with the sum, worker 1 at offset n and worker 2 at offset n - 1
    got the same seed and ran the same trials. A fresh study (offset 0) keeps the seed itself, so
    single-worker results stay as they were.
    """
    if offset == 0:
        return sampler_seed
    digest = hashlib.sha256(f"crossforget-tpe:{sampler_seed}:{offset}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def run_study(
    steps: Steps,
    num_steps: int,
    space: dict[str, Dimension],
    fixed: dict[str, Any],
    *,
    storage: optuna.storages.BaseStorage,
    study_name: str,
    trials: int,
    setup: dict,
    sampler_seed: int | None = 0,
    console: Console | None = None,
) -> optuna.Study:
    """Run trials until the study holds ``trials`` finished (complete or pruned) ones.

    ``steps(params, record)`` yields the running objective after each of ``num_steps`` steps and may
    ``record(key, value)`` facts about the trial. A study created with another ``setup`` is refused.
    """
    if trials < 1:
        raise CrossforgetError(f"--trials must be at least 1, got {trials}")
    console = console or Console(stderr=True)
    study = _open_study(storage, study_name, setup, sampler_seed)
    done = finished_trials(study)
    if done:
        console.print(f"study {study_name}: resuming with {done} finished trial(s)")

    def objective(trial: optuna.Trial) -> float:
        params = {**fixed, **{name: dim.suggest(trial, name) for name, dim in space.items()}}
        value = math.nan
        for step, value in enumerate(steps(params, trial.set_user_attr)):
            trial.report(value, step)
            if step < num_steps - 1 and trial.should_prune():
                raise optuna.TrialPruned()
        return value

    if done >= trials:
        console.print(f"study {study_name} already holds {done} finished trial(s); nothing to run")
    else:
        study.optimize(
            _infeasible_pruned(objective),
            n_trials=trials - done,
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED), _announcer(console, trials)],
        )
    if _best(study) is None:
        raise CrossforgetError(f"no trial of study {study_name!r} completed; see the trial messages above")
    return study


def _open_study(
    storage: optuna.storages.BaseStorage, study_name: str, setup: dict, sampler_seed: int | None
) -> optuna.Study:
    """The study (created or loaded), its sampler seeded past the trials it holds; another setup refused."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction="minimize",
            load_if_exists=True,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
        )
        # A resumed study must not redraw the parameters its first trials already tried.
        offset = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(
            seed=None if sampler_seed is None else sampler_seed_for(sampler_seed, offset)
        )
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", json.loads(json.dumps(setup, default=str)))
    elif stored != json.loads(json.dumps(setup, default=str)):
        raise CrossforgetError(
            f"study {study_name!r} in this storage was created for another setup; resume it with the same "
            "options or choose another --study name"
        )
    return study


def _announcer(console: Console, trials: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """The callback that prints each finished trial and the best so far."""

    def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        if "error" in trial.user_attrs:
            console.print(f"trial {trial.number} infeasible: {trial.user_attrs['error']} ({shown})")
            return
        value = trial.value if trial.value is not None else _last(trial)
        best = _best(study)
        best_text = f"; best {best.value:.3f} (trial {best.number})" if best is not None else ""
        console.print(
            f"trial {trial.number} {trial.state.name.lower()}: {value:.3f} ({shown}){best_text} "
            f"[{finished_trials(study)}/{trials}]"
        )

    return announce


def _infeasible_pruned(objective: Callable[[optuna.Trial], float]) -> Callable[[optuna.Trial], float]:
    """A CrossforgetError inside a trial (e.g. a k the data cannot honour) marks that point infeasible.

    The trial is recorded as pruned with the message: TPE ranks pruned trials below every complete one,
    so it learns to avoid the region, where a failed trial would simply be ignored and drawn again.
    """

    def wrapped(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except CrossforgetError as exc:
            trial.set_user_attr("error", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc

    return wrapped


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return min(complete, key=lambda t: (t.value, t.number)) if complete else None


def _last(trial: optuna.trial.FrozenTrial) -> float:
    values = trial.intermediate_values
    return values[max(values)] if values else math.nan


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ValidationObjective:
    """The unlearning objective on the validation split: Original and Retrain scored once, the method
    run per (seed, bit length) step."""

    def __init__(
        self,
        method: str,
        checkpoints: OriginalCheckpoints,
        forget: Sequence[str],
        validation: RetrievalSplit,
        seeds: Sequence[int],
        base_options: dict[str, Any],
        console: Console,
    ) -> None:
        if not seeds:
            raise CrossforgetError("give at least one seed (--seeds 0)")
        self.method, self.checkpoints, self.seeds = method, checkpoints, list(seeds)
        self.base_options = dict(base_options)
        self.request = ForgetRequest(forget)
        self.validation = validation
        loaded = checkpoints.loaded
        self.part = partition(loaded.data, validation, self.request)
        for what, found in (("carrying", self.part.query_forget), ("without", self.part.query_retain)):
            if found.size == 0:
                raise CrossforgetError(
                    f"the validation split ({validation.query.size} items) holds no item {what} "
                    f"{', '.join(self.request.classes)}; raise --validation-size"
                )
        self.truth: dict[int, dict[str, dict[str, float]]] = {}
        for saved, reference in zip(checkpoints.saved, checkpoints.references, strict=True):
            store = store_for(saved, loaded)
            original = column_scores(saved.model, store, validation, self.part)
            started = time.perf_counter()
            retrain_model, _, diag = run_column(
                "retrain", reference.seed, saved, loaded, self.request, reference
            )
            retrain = column_scores(retrain_model, store, validation, self.part)
            console.print(
                f"{saved.bits} bits: Retrain {'from cache' if diag['cached'] else 'trained'} "
                f"({time.perf_counter() - started:.1f} s)"
            )
            self.truth[saved.bits] = {
                d: {"forget": 100 * retrain[d][PRIMARY_FORGET], "retain": 100 * original[d][RETAIN]}
                for d in DIRECTIONS
            }

    @property
    def num_steps(self) -> int:
        return len(self.seeds) * len(self.checkpoints.saved)

    def terms(self, scores: dict, bits: int) -> tuple[float, float]:
        """(|Delta| D_f, |Delta| D_r) of one run, averaged over directions, in mAP points."""
        truth = self.truth[bits]
        forget = np.mean([abs(100 * scores[d][PRIMARY_FORGET] - truth[d]["forget"]) for d in DIRECTIONS])
        retain = np.mean([abs(100 * scores[d][RETAIN] - truth[d]["retain"]) for d in DIRECTIONS])
        return float(forget), float(retain)

    def __call__(self, params: dict[str, Any], record: Callable[[str, Any], None]) -> Iterator[float]:
        unlearner = create_method(self.method, **{**self.base_options, **params})
        loaded = self.checkpoints.loaded
        done: list[float] = []
        per_seed: dict[str, list[tuple[float, float]]] = {}
        for seed in self.seeds:
            for saved in self.checkpoints.saved:
                new, _ = run_method(unlearner, saved, loaded, self.request, seed)
                scores = column_scores(new.model, store_for(saved, loaded), self.validation, self.part)
                forget, retain = self.terms(scores, saved.bits)
                per_seed.setdefault(str(seed), []).append((forget, retain))
                done.append(forget + retain)
                yield float(np.mean(done))
        record("per_seed", {s: float(np.mean([f + r for f, r in v])) for s, v in per_seed.items()})
        record("delta_forget", float(np.mean([f for v in per_seed.values() for f, _ in v])))
        record("delta_retain", float(np.mean([r for v in per_seed.values() for _, r in v])))


def k_upper_bound(checkpoints: OriginalCheckpoints, forget: Sequence[str]) -> int | None:
    """The largest k every checkpoint allows: retained classes with a prototype, minus one left over."""
    forget_count = len(ForgetRequest(forget).indices(checkpoints.class_names))
    bounds = []
    for saved in checkpoints.saved:
        if not saved.prototypes:
            return None
        defined = int(np.isfinite(saved.prototypes["image"].numpy()).all(axis=1).sum())
        bounds.append(defined - forget_count - 1)
    return min(bounds) if bounds else None


def trial_records(study: optuna.Study) -> list[dict]:
    """Every trial as a plain dict (state, value or last reported value, params, attributes, seconds)."""
    records = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (_last(t) if t.intermediate_values else None)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        records.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": value,
                "params": dict(t.params),
                "user_attrs": dict(t.user_attrs),
                "seconds": seconds,
            }
        )
    return records


def best_payload(
    study: optuna.Study, method: str, fixed: dict, base_options: dict, storage_url: str, setup: dict
) -> dict:
    """The file ``unlearn --params`` and ``demo --ppp-params/--ssd-params`` read, with the evidence.

    ``params`` holds every option of the method, defaults included, so the file means the same thing
    after a default changes; ``tuned`` names the searched ones.
    """
    best = _best(study)
    assert best is not None  # run_study refuses a study without a complete trial
    per_seed = best.user_attrs.get("per_seed", {})
    options = method_options(method)(**{**base_options, **fixed, **best.params})
    return {
        "method": method,
        "params": asdict(options),
        "tuned": sorted(best.params),
        "objective": best.value,
        "trials": finished_trials(study),
        "study": study.study_name,
        "storage": storage_url,
        "best_trial": best.number,
        "objective_over_seeds": {**seed_summary(list(per_seed.values())), "values": per_seed},
        "delta": {
            "forget": best.user_attrs.get("delta_forget"),
            "retain": best.user_attrs.get("delta_retain"),
        },
        "setup": setup,
        "environment": environment_stamp(),
    }


def write_tuning(out: Path, study: optuna.Study, payload: dict) -> None:
    """best.json, trials.json / .csv, tuning.md and history.png into ``out``."""
    records = trial_records(study)
    names = sorted({k for r in records for k in r["params"]})
    columns = ["trial", "state", "objective", *names, "seconds"]
    rows = [
        [
            r["number"],
            r["state"],
            "" if r["value"] is None else r["value"],
            *[r["params"].get(n, "") for n in names],
            "" if r["seconds"] is None else r["seconds"],
        ]
        for r in records
    ]
    atomic_write_json(out / "best.json", payload)
    atomic_write_json(out / "trials.json", {"study": study.study_name, "trials": records})
    atomic_write_text(out / "trials.csv", csv_table(columns, rows))
    title = f"Tuning {payload['method'].upper()} ({payload['study']})"
    best_rows = [[k, _short(v)] for k, v in payload["params"].items()]
    ranked = sorted((r for r in rows if r[1] == "COMPLETE"), key=lambda r: r[2])[:10]
    summary = payload["objective_over_seeds"]
    text = (
        f"# {title}\n\nObjective (validation split, lower is better): |Δ| D_f to Retrain + |Δ| D_r to "
        f"Original, mean over bits × directions, in mAP points.\n\n"
        f"Best trial {payload['best_trial']} of {payload['trials']}: objective {payload['objective']:.3f} "
        f"(|Δ| D_f {payload['delta']['forget']:.3f}, |Δ| D_r {payload['delta']['retain']:.3f})"
        + (
            f"; over {summary['n']} seeds mean {summary['mean']:.3f}, 95% CI "
            f"[{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"
            if summary["ci_low"] is not None
            else ""
        )
        + ".\n\n## Best parameters\n\n"
        + markdown_table(["option", "value"], best_rows)
        + "\n## Ten best trials\n\n"
        + markdown_table(columns, ranked)
    )
    atomic_write_text(out / "tuning.md", text)
    tuning_chart(records, title, out / "history.png")


def setup_description(
    method: str,
    checkpoints: OriginalCheckpoints,
    forget: Sequence[str],
    seeds: Sequence[int],
    validation_size: int,
    validation_seed: int,
    base_options: dict,
    fixed: dict,
    space: dict[str, Dimension],
) -> dict:
    """Everything that makes trials of one study comparable (stored with the study, hashed into its name).

    The method's options are recorded with their defaults, so a changed default starts a new study.
    """
    resolved = asdict(method_options(method)(**base_options, **fixed))
    return {
        "method": method,
        "forget": list(ForgetRequest(forget).classes),
        "checkpoint": str(checkpoints.path.resolve()),
        "bits": checkpoints.bits,
        "seeds": list(seeds),
        "validation": {"size": validation_size, "seed": validation_seed},
        "options": {k: v for k, v in resolved.items() if k not in space},
        "fixed": fixed,
        "space": {k: asdict(v) for k, v in space.items()},
    }


@dataclass
class TuningRequest:
    """One study as asked for: the method and forget request, the seeds and validation split of each
    trial, the options held for every trial (``base``), the tuned options held ``fixed``, and the
    search ``space`` of the rest."""

    method: str
    forget: list[str]
    seeds: list[int]
    validation_size: int
    validation_seed: int
    base: dict
    fixed: dict
    space: dict[str, Dimension]

    @classmethod
    def checked(
        cls,
        method: str,
        forget: Sequence[str],
        seeds: Sequence[int],
        validation: tuple[int, int],
        fixed: dict,
        base: dict,
        ranges: dict[str, tuple[float, float]],
    ) -> TuningRequest:
        """Unknown options and bad values fail here, before any work; values come back as the option
        types. ``validation`` is (size, seed) of the held-out split."""
        space = search_space(method, fixed, ranges)
        overlap = sorted(set(base) & set(method_info(method).search_space))
        if overlap:
            raise CrossforgetError(f"{overlap} are tuned options; hold them with --fix, not --option")
        checked = validate_options(method, {**base, **fixed})
        fixed, base = {k: checked[k] for k in fixed}, {k: checked[k] for k in base}
        return cls(method, list(forget), list(seeds), *validation, base, fixed, space)

    def fit_to(self, checkpoints: OriginalCheckpoints) -> None:
        """Check the forget classes against the data, and narrow k's range to what the data allows."""
        ForgetRequest(self.forget).indices(checkpoints.class_names)
        if "k" not in self.space:
            return
        bound = k_upper_bound(checkpoints, self.forget)
        if bound is not None and bound < self.space["k"].high:
            if bound <= self.space["k"].low:
                raise CrossforgetError(
                    f"the data leaves room for k <= {bound} only; pass --fix k={max(1, bound)}"
                )
            self.space["k"] = Dimension("int", self.space["k"].low, bound)

    def setup(self, checkpoints: OriginalCheckpoints) -> dict:
        """``setup_description`` of this request on ``checkpoints``."""
        return setup_description(
            self.method,
            checkpoints,
            self.forget,
            self.seeds,
            self.validation_size,
            self.validation_seed,
            self.base,
            self.fixed,
            self.space,
        )


def tune(
    request: TuningRequest,
    checkpoints: OriginalCheckpoints,
    storage: optuna.storages.BaseStorage,
    storage_url: str,
    study_name: str,
    trials: int,
    sampler_seed: int,
    console: Console,
) -> tuple[optuna.Study, dict]:
    """Run (or resume) the study until it holds ``trials`` finished trials; the study and the best
    parameters' payload (best.json)."""
    setup = request.setup(checkpoints)
    validation = validation_split(checkpoints.loaded.split, request.validation_size, request.validation_seed)
    console.print(
        f"study {study_name}: {request.method} forgetting {', '.join(request.forget)} on "
        f"{checkpoints.bits} bits, {validation.query.size} validation queries, {trials} trials"
    )
    objective = ValidationObjective(
        request.method, checkpoints, request.forget, validation, request.seeds, request.base, console
    )
    study = run_study(
        objective,
        objective.num_steps,
        request.space,
        request.fixed,
        storage=storage,
        study_name=study_name,
        trials=trials,
        setup=setup,
        sampler_seed=sampler_seed,
        console=console,
    )
    return study, best_payload(study, request.method, request.fixed, request.base, storage_url, setup)


def earlier_result_of(out: Path, storage: str, study: str | None) -> bool:
    """Whether ``out`` holds what an earlier run of this tuning wrote (best.json of the same storage and,
    when known, study): re-running the command resumes the study and refreshes that folder."""
    try:
        best = json.loads((out / "best.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(best, dict) and best.get("storage") == storage and study in (None, best.get("study"))
