"""The paper's Table 1: class forgetting on a single-label classifier, every method, over seeds.

Rows: D_f Acc (test images of the forget classes; compare with Retrain), D_r Acc (test images of the
other classes; compare with Original), MIA (entropy attack, mean membership of the forget training
samples; compare with Retrain), and the shadow-model MIA when enabled. Original, Bad and Retrain are
deterministic given the training seed and run once; the other methods run once per seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from rich.console import Console
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.container import SingleLabelData
from crossforget.engine.reference_cache import cache_key, cached_reference
from crossforget.engine.results import Column, SeedResults
from crossforget.engine.runner import plan, run_columns
from crossforget.engine.statistics import Summary, format_summary, summarise
from crossforget.metrics.keys import CLASSIFICATION, FORGET_ACC, MIA, MIA_SHADOW, RETAIN_ACC, display_names
from crossforget.models.classifier import classifier_config
from crossforget.reporting.figures import table1_chart
from crossforget.reporting.tables import write_results
from crossforget.tasks.classification.checkpoint import (
    ClassifierCheckpoint,
    load_classifier_checkpoint,
    save_classifier_checkpoint,
)
from crossforget.tasks.classification.evaluation import evaluate_classifier
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.shadow_mia import train_shadow_attack
from crossforget.tasks.classification.store import ImageStore, make_store
from crossforget.tasks.classification.task import attach_full_fisher, classification_task
from crossforget.tasks.classification.training import train_classifier
from crossforget.unlearning.methods import UnlearningTask, create_method, method_label, method_names, seeding

METHODS = ("original", "bad_model", "retrain", "finetune", "bad_teacher", "amnesiac", "ssd", "ppp")
ROWS = display_names(CLASSIFICATION)


@dataclass
class Table1Config:
    """What to run. ``method_options`` maps a method name to options for ``create_method``."""

    forget: Sequence[str] = ("dog",)
    seeds: Sequence[int] = (0, 1, 2)
    methods: Sequence[str] = METHODS
    architecture: str = "resnet-small"
    image_size: int | None = None
    pretrained: str | None = None
    recipe: ClassifierRecipe = field(default_factory=ClassifierRecipe)
    training_seed: int = 0
    method_options: dict[str, dict] = field(default_factory=dict)
    shadow: bool = True

    def check(self) -> None:
        known = set(method_names()) | {"original"}
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise CrossforgetError(
                f"unknown method(s) {unknown}; choose from original, {', '.join(method_names())}"
            )
        if not self.seeds:
            raise CrossforgetError("give at least one seed (--seeds 0 1 2)")


def _reference(
    cache_dir: Path | None,
    role: str,
    description: dict,
    build: Callable[[], ClassifierCheckpoint],
    complete: Callable[[ClassifierCheckpoint], bool] = lambda _: False,
) -> tuple[ClassifierCheckpoint, bool]:
    """A trained reference from the cache (keyed by everything that changes it), or built and stored;
    ``complete`` adds what this run needs to it (True when it did)."""
    if cache_dir is None:
        saved = build()
        complete(saved)
        return saved, False
    entry = _entry(cache_dir, role, description)
    return cached_reference(entry, load_classifier_checkpoint, save_classifier_checkpoint, build, complete)


def _entry(cache_dir: Path, role: str, description: dict) -> Path:
    return cache_dir / f"{role}-{cache_key({'role': role, **description})}"


def _original(
    data: SingleLabelData,
    store: ImageStore,
    model_config: dict,
    config: Table1Config,
    cache_dir: Path | None,
    description: dict,
) -> tuple[ClassifierCheckpoint, bool]:
    """The Original, with the full-data Fisher attached when SSD will run (stored with it in the cache)."""
    needs_fisher = "ssd" in config.methods

    def build() -> ClassifierCheckpoint:
        return train_classifier(
            data, store, model_config, config.recipe, config.training_seed, description="Original"
        )

    def complete(saved: ClassifierCheckpoint) -> bool:
        if needs_fisher and not saved.fisher:
            attach_full_fisher(saved, store, data.train)
            return True
        return False

    return _reference(cache_dir, "original", description, build, complete)


def _retrain(
    original: ClassifierCheckpoint,
    task: UnlearningTask,
    config: Table1Config,
    cache_dir: Path | None,
    description: dict,
) -> tuple[ClassifierCheckpoint, bool]:
    """Retrain through the registry (the Original's recipe on D_r), cached like the Original."""
    options = config.method_options.get("retrain", {})

    def build() -> ClassifierCheckpoint:
        outcome = create_method("retrain", **options).unlearn(original.model, task, config.training_seed)
        lineage = {"method": "retrain", "seed": config.training_seed, "timings": outcome.timings}
        return ClassifierCheckpoint(
            outcome.model, original.preprocessor, {**original.config, "unlearning": lineage}
        )

    forget = sorted(task.class_names[c] for c in task.forget_classes)
    return _reference(cache_dir, "retrain", {**description, "forget": forget, "options": options}, build)


def _run_method(
    method: str,
    seed: int,
    original: ClassifierCheckpoint,
    was_cached: bool,
    task: UnlearningTask,
    config: Table1Config,
    cache_dir: Path | None,
    description: dict,
) -> tuple[nn.Module, dict, dict]:
    """(model, timings, diagnostics) of one column for one seed."""
    if method == "original":
        return original.model, {}, {"cached": was_cached}
    if method == "retrain":
        saved, hit = _retrain(original, task, config, cache_dir, description)
        return saved.model, saved.config.get("unlearning", {}).get("timings", {}), {"cached": hit}
    outcome = create_method(method, **config.method_options.get(method, {})).unlearn(
        original.model, task, seed
    )
    return outcome.model, outcome.timings, outcome.diagnostics


def summarise_seeds(per_seed: dict) -> dict:
    """Per method and metric: mean, sample std, 95% CI and the values, in percent."""
    return {
        method: {
            metric: summarise([s[metric] for s in by_seed.values()]).scaled(100).to_dict()
            for metric in ROWS
            if metric in next(iter(by_seed.values()))
        }
        for method, by_seed in per_seed.items()
    }


def _report(console: Console, method: str, seed: int, column: Column, seconds: float) -> None:
    scores = column.scores
    shadow = f" shadow {100 * scores[MIA_SHADOW]:.1f}" if MIA_SHADOW in scores else ""
    console.print(
        f"  {method_label(method)} seed {seed}: D_f {100 * scores[FORGET_ACC]:.1f} "
        f"D_r {100 * scores[RETAIN_ACC]:.1f} MIA {100 * scores[MIA]:.1f}{shadow} ({seconds:.1f} s)"
    )


def run_table1(data: SingleLabelData, config: Table1Config, cache_dir: Path | None, console: Console) -> dict:
    """Every number of the table, per seed, with timings and method diagnostics."""
    config.check()
    started = time.perf_counter()
    forget = data.class_indices(config.forget)
    model_config = classifier_config(
        config.architecture, data.num_classes, config.image_size, config.pretrained
    )
    store = make_store(data, model_config)
    description = {
        "dataset": data.info.get("fingerprint"),
        "model": model_config,
        "recipe": config.recipe.to_dict(),
        "seed": config.training_seed,
    }
    timings: dict = {"data_store": time.perf_counter() - started}
    tick = time.perf_counter()
    original, was_cached = _original(data, store, model_config, config, cache_dir, description)
    timings["original"] = time.perf_counter() - tick
    console.print(f"Original {'from cache' if was_cached else 'trained'} ({timings['original']:.1f} s)")
    shadow, shadow_info = None, {}
    if config.shadow:
        tick = time.perf_counter()
        shadow, shadow_info = train_shadow_attack(
            data, store, model_config, config.recipe, config.training_seed, cache_dir
        )
        timings["shadow_models"] = time.perf_counter() - tick
        console.print(f"shadow attack ready ({timings['shadow_models']:.1f} s)")
    task = classification_task(original, data, store, forget)

    def column(method: str, seed: int) -> Column:
        model, timing, diagnostics = _run_method(
            method, seed, original, was_cached, task, config, cache_dir, description
        )
        return Column(evaluate_classifier(model, store, data, forget, shadow), timing, diagnostics)

    runs = SeedResults()
    runs_plan = plan(
        config.methods,
        config.seeds,
        {m for m in config.methods if seeding(m) == "fixed"},
        config.training_seed,
    )
    report = partial(_report, console)
    run_columns(runs, runs_plan, column, lambda method, seed: (method, str(seed)), report, wall="wall")
    timings["total"] = time.perf_counter() - started
    return _table1_results(runs, data, task, shadow_info, timings, model_config, config)


def _table1_results(
    runs: SeedResults,
    data: SingleLabelData,
    task: UnlearningTask,
    shadow_info: dict,
    timings: dict,
    model_config: dict,
    config: Table1Config,
) -> dict:
    """The results JSON: per-seed trees, summaries, data and partition sizes, the run's configuration."""
    results = runs.as_dict()
    results.update(
        summary=summarise_seeds(results["per_seed"]),
        forget=[data.class_names[c] for c in task.forget_classes],
        data=data.summary(),
        partition={"train_forget": int(task.train_forget.size), "train_retain": int(task.train_retain.size)},
        shadow=shadow_info,
        run_timings=timings,
        config={
            "seeds": list(config.seeds),
            "methods": list(config.methods),
            "training_seed": config.training_seed,
            "model": model_config,
            "recipe": config.recipe.to_dict(),
            "method_options": config.method_options,
            "shadow": config.shadow,
            "units": "percent in summary, fractions in per_seed",
        },
        environment=environment_stamp(),
    )
    return results


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """The paper's layout: one column per method, rows D_f Acc, D_r Acc, MIA (%, mean ± std)."""
    methods = list(results["summary"])
    columns = ["Metric"] + [method_label(m) for m in methods]
    rows = []
    for metric, label in ROWS.items():
        if all(metric in results["summary"][m] for m in methods):
            rows.append([label] + [format_summary(_summary(results["summary"][m][metric])) for m in methods])
    return columns, rows


def _summary(entry: dict) -> Summary:
    return Summary(
        entry["mean"],
        entry["std"],
        entry["ci_low"],
        entry["ci_high"],
        entry["n"],
        entry["confidence"],
        tuple(entry["values"]),
    )


def write_table1(out: Path, results: dict, console: Console) -> None:
    columns, rows = table_rows(results)
    title = (
        f"Classification (%) forgetting {', '.join(results['forget'])} on {results['data']['name']} "
        f"({results['config']['model']['architecture']})"
    )
    write_results(out, "results", results, columns, rows, title, console=console)
    table1_chart(results, out / "results.png", method_label, ROWS)
