"""The paper's Table 2 on one dataset: Original, Bad, Retrain, Finetune, SSD, PPP at several bit lengths.

D_f mAP is judged with forget-label relevance (the primary reading, "is the concept still
retrievable?"); the any-label reading is kept in the JSON. |Delta| = mean over bits x directions of
|method - Retrain| on D_f and |method - Original| on D_r, in mAP percentage points.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_text
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetPartition, ForgetRequest, partition
from crossforget.data.splits import RetrievalSplit
from crossforget.engine.result_cache import CHECKPOINT_METHODS, ResultCache
from crossforget.engine.statistics import summarise as summarise_values
from crossforget.engine.training import TrainingRecipe
from crossforget.models.inputs import BatchSource
from crossforget.reporting.tables import markdown_table, print_table, write_results
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint
from crossforget.tasks.hashing.evaluation import DIRECTIONS, evaluate_model
from crossforget.tasks.hashing.reference import trained_reference
from crossforget.tasks.hashing.task import run_method, store_for
from crossforget.tasks.hashing.training import LoadedData
from crossforget.unlearning.methods import create_method, find_method, method_label, seeding

PRIMARY_FORGET = "forget_label"
# Paired comparisons reported in the JSON: (method, baseline) -> method - baseline at each common seed.
PAIRED = (("ppp", "ssd"),)


def column_label(method: str) -> str:
    """A method's label in the hashing tables and figures: its own label, with the table's footnote
    mark * where the method comes from classification and its hashing form is our extension."""
    info = find_method(method)
    return method_label(method) + ("*" if info is not None and info.hashing_extension else "")


@dataclass
class Table2Config:
    forget: Sequence[str] = ("dog",)
    bits: Sequence[int] = (16, 32, 64)
    seeds: Sequence[int] = (0, 1, 2)
    methods: Sequence[str] = ("original", "bad_model", "retrain", "finetune", "ssd", "ppp")
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    training_seed: int = 0
    model_options: dict = field(default_factory=dict)
    method_options: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceRecipe:
    """How Retrain is made: the Original's recipe and seed, cached in ``cache_dir``; the model config is
    the one the Original recorded."""

    cache_dir: Path
    recipe: TrainingRecipe
    seed: int

    @classmethod
    def of_checkpoint(cls, saved: HashingCheckpoint, cache_dir: Path) -> ReferenceRecipe:
        """The recipe that trained an Original checkpoint (refuses Retrain and unlearned checkpoints)."""
        training = saved.config["training"]
        if training.get("excluded_classes") or saved.config.get("unlearning"):
            raise CrossforgetError(
                "this command needs an Original checkpoint (from `crossforget train` without "
                "--exclude), not a Retrain or unlearned one"
            )
        return cls(cache_dir, TrainingRecipe.from_dict(training["recipe"]), int(training["seed"]))

    def retrain(
        self, loaded: LoadedData, original: HashingCheckpoint, exclude: Sequence[str]
    ) -> tuple[HashingCheckpoint, bool]:
        """Retrain of ``original`` without ``exclude`` (its model config as recorded); (model, was_cached)."""
        model = original.config["model"]
        return trained_reference(
            self.cache_dir, loaded, original.bits, self.recipe, self.seed, exclude, model=model
        )


def run_column(
    method: str,
    seed: int,
    original: HashingCheckpoint,
    loaded: LoadedData,
    request: ForgetRequest,
    reference: ReferenceRecipe,
    options: dict | None = None,
    cache: ResultCache | None = None,
) -> tuple[nn.Module, dict, dict]:
    """(model, timings, diagnostics) of one column at one seed: Original as is, Retrain from the cache,
    any other method run on the Original with ``options`` (from ``cache`` for ``CHECKPOINT_METHODS``)."""
    if method == "original":
        return original.model, {}, {}
    if method == "retrain":
        retrain, cached = reference.retrain(loaded, original, request.classes)
        return retrain.model, {"train": retrain.config["training"]["seconds"]}, {"cached": cached}
    unlearning = create_method(method, **(options or {}))

    def run() -> tuple[HashingCheckpoint, dict, dict]:
        new, outcome = run_method(unlearning, original, loaded, request, seed)
        return new, outcome.timings, outcome.diagnostics

    if cache is None or method not in CHECKPOINT_METHODS:
        new, timings, diagnostics = run()
        return new.model, timings, diagnostics
    settings = dataclasses.asdict(unlearning.options)
    new, timings, diagnostics, _ = cache.method_checkpoint(method, settings, original, request, seed, run)
    return new.model, timings, diagnostics


def scored_column(
    method: str,
    seed: int,
    original: HashingCheckpoint,
    loaded: LoadedData,
    request: ForgetRequest,
    reference: ReferenceRecipe,
    options: dict,
    cache: ResultCache,
    store: BatchSource,
    part: ForgetPartition,
) -> tuple[dict, dict, dict, str]:
    """(scores, timings, diagnostics, what came from the cache) of one column at one seed.

    Original and Retrain are evaluated (or their scores read) by the digest of their weights; any other
    method's column is read whole from ``cache`` when it holds it, else run and stored. Diagnostics of
    Retrain and the methods say ``cached``: whether the model was made in this run.
    """

    def score(model: nn.Module) -> dict:
        return column_scores(model, store, loaded.split, part)

    if method in ("original", "retrain"):
        model, timings, diagnostics = run_column(method, seed, original, loaded, request, reference)
        scores, scored = cache.scores(model, store, partial(score, model))
        notes = ["model cached"] if diagnostics.get("cached") else []
        notes += ["scores cached"] if scored else []
        return scores, timings, diagnostics, ", ".join(notes)
    settings = dataclasses.asdict(create_method(method, **options).options)

    def run() -> tuple[nn.Module, dict, dict]:
        return run_column(method, seed, original, loaded, request, reference, options, cache)

    scores, timings, diagnostics, cached = cache.column(
        method, settings, original, request, seed, store, run, score
    )
    return scores, timings, {**diagnostics, "cached": cached}, "column cached" if cached else ""


def column_scores(
    model: nn.Module, store: BatchSource, split: RetrievalSplit, part: ForgetPartition
) -> dict[str, dict[str, float]]:
    """{direction: {retain, forget_label, forget_any}} as fractions (the per-seed record of every runner)."""
    return {
        r["direction"]: {k: r[k] for k in ("retain", "forget_label", "forget_any")}
        for r in evaluate_model(model, store, split, part)
    }


def run_table2(loaded: LoadedData, config: Table2Config, cache_dir: Path, console: Console) -> dict:
    """Every number of the table; methods with sampled data run once per seed, the rest once."""
    request = ForgetRequest(config.forget)
    part = partition(loaded.data, loaded.split, request)
    reference = ReferenceRecipe(cache_dir, config.recipe, config.training_seed)
    cache = ResultCache(cache_dir, loaded, part)
    results: dict = {"per_seed": {}, "timings": {}, "diagnostics": {}}
    for bits in config.bits:
        # SSD's full-training-set Fisher does not depend on the seed: compute it once per model.
        original, cached = trained_reference(
            cache_dir,
            loaded,
            bits,
            config.recipe,
            config.training_seed,
            (),
            config.model_options,
            store_fisher="ssd" in config.methods,
        )
        console.print(f"{bits} bits: Original {'from cache' if cached else 'trained'}")
        store = store_for(original, loaded)
        for method in config.methods:
            seeds = config.seeds if seeding(method) == "sample" else [config.training_seed]
            for seed in seeds:
                started = time.perf_counter()
                scores, timing, diag, note = scored_column(
                    method,
                    seed,
                    original,
                    loaded,
                    request,
                    reference,
                    config.method_options.get(method, {}),
                    cache,
                    store,
                    part,
                )
                results["per_seed"].setdefault(method, {}).setdefault(str(bits), {})[str(seed)] = scores
                results["timings"].setdefault(method, {}).setdefault(str(bits), {})[str(seed)] = timing
                results["diagnostics"].setdefault(method, {}).setdefault(str(bits), {})[str(seed)] = diag
                console.print(
                    f"  {column_label(method)} seed {seed}: "
                    f"D_f {100 * scores['I2T'][PRIMARY_FORGET]:.1f}/"
                    f"{100 * scores['T2I'][PRIMARY_FORGET]:.1f} "
                    f"D_r {100 * scores['I2T']['retain']:.1f}/{100 * scores['T2I']['retain']:.1f} "
                    f"({time.perf_counter() - started:.1f} s{', ' + note if note else ''})"
                )
    results["summary"] = summarise(results["per_seed"], config)
    results["delta"] = deltas(results["summary"], config)
    results["paired"] = {
        f"{a}-{b}": paired_difference(results["per_seed"], a, b)
        for a, b in PAIRED
        if a in results["per_seed"] and b in results["per_seed"]
    }
    results["forget"] = list(request.classes)
    results["partition"] = part.summary(loaded.data.class_names)
    results["config"] = {
        "bits": list(config.bits),
        "seeds": list(config.seeds),
        "methods": list(config.methods),
        "recipe": config.recipe.to_dict(),
        "training_seed": config.training_seed,
        "model_options": config.model_options,
        "method_options": config.method_options,
        "dataset": loaded.spec.to_dict(),
        "primary_forget_metric": PRIMARY_FORGET,
        "device": str(loaded.device or "cpu"),
    }
    results["environment"] = environment_stamp()
    return results


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


def summarise(per_seed: dict, config: Table2Config | None = None) -> dict:
    """``seed_summary`` per method, bits, direction and metric, in %."""
    summary: dict = {}
    for method, by_bits in per_seed.items():
        for bits, by_seed in by_bits.items():
            for direction in DIRECTIONS:
                for metric in ("retain", "forget_label", "forget_any"):
                    entry = seed_summary([100 * s[direction][metric] for s in by_seed.values()])
                    summary.setdefault(method, {}).setdefault(f"{bits}-{direction}", {})[metric] = entry
    return summary


def deltas(summary: dict, config: Table2Config | None = None) -> dict:
    """|Delta| per method: D_f against Retrain, D_r against Original (percentage points)."""
    if "original" not in summary or "retrain" not in summary:
        return {}
    out = {}
    for method, settings in summary.items():
        forget = [
            abs(v[PRIMARY_FORGET]["mean"] - summary["retrain"][k][PRIMARY_FORGET]["mean"])
            for k, v in settings.items()
        ]
        retain = [
            abs(v["retain"]["mean"] - summary["original"][k]["retain"]["mean"]) for k, v in settings.items()
        ]
        out[method] = {"forget": float(np.mean(forget)), "retain": float(np.mean(retain))}
    return out


def paired_difference(per_seed: dict, method: str, baseline: str) -> dict:
    """``method - baseline`` seed by seed, in mAP points, with mean, std and the 95% t-interval.

    Paired because seed s draws the same forget sample in every sampled method (``forget_sample``),
    so the seed-to-seed spread of the sample cancels. ``settings``: per bits-direction and metric;
    ``delta``: each seed's |Delta| (against the deterministic Retrain and Original, as in ``deltas``)
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
                for metric in ("retain", "forget_label", "forget_any")
            }
    if "original" in per_seed and "retrain" in per_seed:

        def reference(name: str, b: str) -> dict:
            return next(iter(per_seed[name][b].values()))

        def seed_delta(runs: dict, s: str, key: str, against: str) -> float:
            return float(
                np.mean(
                    [
                        abs(runs[b][s][d][key] - reference(against, b)[d][key])
                        for b in bits
                        for d in DIRECTIONS
                    ]
                )
            )

        out["delta"] = {
            name: seed_summary(
                [
                    100 * (seed_delta(first, s, key, against) - seed_delta(second, s, key, against))
                    for s in seeds
                ]
            )
            for name, key, against in (
                ("forget", PRIMARY_FORGET, "retrain"),
                ("retain", "retain", "original"),
            )
        }
    return out


def table_rows(results: dict, metric: str = PRIMARY_FORGET) -> tuple[list[str], list[list]]:
    methods = list(results["summary"])
    columns = ["Bits"] + [f"{column_label(m)} {name}" for m in methods for name in ("D_f", "D_r")]
    settings = list(results["summary"][methods[0]])
    rows = []
    for setting in settings:
        row: list = [setting]
        for m in methods:
            for key in (metric, "retain"):
                e = results["summary"][m][setting][key]
                row.append(f"{e['mean']:.1f}" + (f" ± {e['std']:.1f}" if e["n"] > 1 else ""))
        rows.append(row)
    if results["delta"] and metric == PRIMARY_FORGET:
        row = ["|Δ|"]
        for m in methods:
            d = results["delta"][m]
            row += (
                [f"{d['forget']:.2f}", f"{d['retain']:.2f}"] if m not in ("original", "retrain") else ["", ""]
            )
        rows.append(row)
    return columns, rows


def write_table2(out: Path, results: dict, console: Console) -> None:
    columns, rows = table_rows(results)
    title = (
        f"Retrieval mAP (%) forgetting {', '.join(results['forget'])} on "
        f"{results['config']['dataset']['name']} (D_f: forget-label relevance)"
    )
    print_table(title, columns, rows, console)
    write_results(out, "results", results, columns, rows, title)
    any_columns, any_rows = table_rows(results, "forget_any")
    atomic_write_text(
        out / "results_any_label.md",
        f"# {title.replace('forget-label', 'any-label')}\n\n" + markdown_table(any_columns, any_rows),
    )
    from crossforget.reporting.figures import table2_chart

    table2_chart(results, out / "results.png")
