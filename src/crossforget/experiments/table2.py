"""The paper's Table 2 on one dataset: Original, Bad, Retrain, Finetune, SSD, PPP at several bit lengths.

D_f mAP is judged with forget-label relevance (the primary reading, "is the concept still
retrievable?"); the any-label reading is kept in the JSON. |Delta| = mean over bits x directions of
|method - Retrain| on D_f and |method - Original| on D_r, in mAP percentage points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from rich.console import Console
from torch import nn

from crossforget.core.io import atomic_write_text
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetPartition, ForgetRequest, partition
from crossforget.engine.results import (
    Column,
    SeedResults,
    deltas,
    paired_difference,
    retrieval_line,
    summarise,
)
from crossforget.engine.runner import plan, run_columns
from crossforget.engine.training import TrainingRecipe
from crossforget.metrics.keys import FORGET_ANY, PRIMARY_FORGET, RETAIN
from crossforget.models.inputs import BatchSource
from crossforget.reporting.figures import table2_chart
from crossforget.reporting.tables import markdown_table, write_results
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint
from crossforget.tasks.hashing.columns import ReferenceRecipe, column_label, column_scores, run_column
from crossforget.tasks.hashing.reference import trained_reference
from crossforget.tasks.hashing.result_cache import MethodCall, ResultCache
from crossforget.tasks.hashing.task import store_for
from crossforget.tasks.hashing.training import LoadedData
from crossforget.unlearning.methods import create_method, seeding

# Paired comparisons reported in the JSON: (method, baseline) -> method - baseline at each common seed.
PAIRED = (("ppp", "ssd"),)


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
class BitLength:
    """What every column at one bit length shares: the Original, its data and store, the request, the
    partition it is scored on, how Retrain is made and the result cache."""

    original: HashingCheckpoint
    loaded: LoadedData
    store: BatchSource
    request: ForgetRequest
    part: ForgetPartition
    reference: ReferenceRecipe
    cache: ResultCache


def scored_column(method: str, seed: int, options: dict, at: BitLength) -> Column:
    """One column at one seed, with a note on what came from the cache.

    Original and Retrain are evaluated (or their scores read) by the digest of their weights; any other
    method's column is read whole from ``cache`` when it holds it, else run and stored. Diagnostics of
    Retrain and the methods say ``cached``: whether the model was made in this run.
    """

    def score(model: nn.Module) -> dict:
        return column_scores(model, at.store, at.loaded.split, at.part)

    if method in ("original", "retrain"):
        model, timings, diagnostics = run_column(
            method, seed, at.original, at.loaded, at.request, at.reference
        )
        scores, scored = at.cache.scores(model, at.store, partial(score, model))
        notes = ["model cached"] if diagnostics.get("cached") else []
        notes += ["scores cached"] if scored else []
        return Column(scores, timings, diagnostics, ", ".join(notes))
    settings = dataclasses.asdict(create_method(method, **options).options)

    def run() -> tuple[nn.Module, dict, dict]:
        return run_column(method, seed, at.original, at.loaded, at.request, at.reference, options, at.cache)

    call = MethodCall(method, settings, at.original, at.request, seed)
    scores, timings, diagnostics, cached = at.cache.column(call, at.store, run, score)
    return Column(scores, timings, {**diagnostics, "cached": cached}, "column cached" if cached else "")


def run_table2(loaded: LoadedData, config: Table2Config, cache_dir: Path, console: Console) -> dict:
    """Every number of the table; methods with sampled data run once per seed, the rest once."""
    request = ForgetRequest(config.forget)
    part = partition(loaded.data, loaded.split, request)
    reference = ReferenceRecipe(cache_dir, config.recipe, config.training_seed)
    cache = ResultCache(cache_dir, loaded, part)
    runs = SeedResults()
    for bits in config.bits:
        _run_bits(runs, bits, loaded, config, (request, part, reference), cache, console)
    return _table2_results(runs, loaded, config, request, part)


def _run_bits(
    runs: SeedResults,
    bits: int,
    loaded: LoadedData,
    config: Table2Config,
    forget: tuple[ForgetRequest, ForgetPartition, ReferenceRecipe],
    cache: ResultCache,
    console: Console,
) -> None:
    """Every column at one bit length into ``runs`` (method / bits / seed)."""
    request, part, reference = forget
    # SSD's full-training-set Fisher does not depend on the seed: compute it once per model.
    original, cached = trained_reference(
        reference.cache_dir,
        loaded,
        bits,
        config.recipe,
        config.training_seed,
        (),
        config.model_options,
        store_fisher="ssd" in config.methods,
    )
    console.print(f"{bits} bits: Original {'from cache' if cached else 'trained'}")
    at = BitLength(original, loaded, store_for(original, loaded), request, part, reference, cache)

    def column(method: str, seed: int) -> Column:
        return scored_column(method, seed, config.method_options.get(method, {}), at)

    run_columns(
        runs,
        plan(config.methods, config.seeds, _once(config.methods), config.training_seed),
        column,
        lambda method, seed: (method, str(bits), str(seed)),
        partial(_report, console),
    )


def _once(methods: Sequence[str]) -> set[str]:
    """The columns run once, at the training seed: all but those that draw a sample per seed."""
    return {m for m in methods if seeding(m) != "sample"}


def _report(console: Console, method: str, seed: int, column: Column, seconds: float) -> None:
    note = f", {column.note}" if column.note else ""
    console.print(
        f"  {column_label(method)} seed {seed}: {retrieval_line(column.scores)} ({seconds:.1f} s{note})"
    )


def _table2_results(
    runs: SeedResults, loaded: LoadedData, config: Table2Config, request: ForgetRequest, part: ForgetPartition
) -> dict:
    """The results JSON: per-seed trees, summaries, |Δ|, paired differences, the run's configuration."""
    results = runs.as_dict()
    results["summary"] = summarise(results["per_seed"])
    results["delta"] = deltas(results["summary"])
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


def table_rows(results: dict, metric: str = PRIMARY_FORGET) -> tuple[list[str], list[list]]:
    methods = list(results["summary"])
    columns = ["Bits"] + [f"{column_label(m)} {name}" for m in methods for name in ("D_f", "D_r")]
    settings = list(results["summary"][methods[0]])
    rows = []
    for setting in settings:
        row: list = [setting]
        for m in methods:
            for key in (metric, RETAIN):
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
    write_results(out, "results", results, columns, rows, title, console=console)
    any_columns, any_rows = table_rows(results, FORGET_ANY)
    atomic_write_text(
        out / "results_any_label.md",
        f"# {title.replace('forget-label', 'any-label')}\n\n" + markdown_table(any_columns, any_rows),
    )
    table2_chart(results, out / "results.png", column_label)
