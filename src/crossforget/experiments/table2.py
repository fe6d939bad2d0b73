"""The paper's Table 2 on one dataset: Original, Bad, Retrain, Finetune, SSD, PPP at several bit lengths.

D_f mAP is judged with forget-label relevance (the primary reading, "is the concept still
retrievable?"); the any-label reading is kept in the JSON. |Delta| = mean over bits x directions of
|method - Retrain| on D_f and |method - Original| on D_r, in mAP percentage points.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from crossforget.data.forget import ForgetRequest, partition
from crossforget.evaluation import DIRECTIONS, evaluate_model
from crossforget.experiments.hashing_task import run_method, store_for
from crossforget.experiments.reference_cache import trained_reference
from crossforget.experiments.reporting import markdown_table, print_table, write_results
from crossforget.experiments.training_run import LoadedData
from crossforget.io import atomic_write_text
from crossforget.reproducibility import environment_stamp
from crossforget.training import TrainingRecipe
from crossforget.unlearning.methods import create_method

REFERENCE = ("original", "bad_model", "retrain", "finetune")
SAMPLED = ("ssd", "ppp")
LABELS = {"original": "Original", "bad_model": "Bad", "retrain": "Retrain", "finetune": "Finetune",
          "ssd": "SSD", "ppp": "PPP", "bad_teacher": "Bad Teacher*", "amnesiac": "Amnesiac*"}
PRIMARY_FORGET = "forget_label"


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


def _scores(records: list[dict]) -> dict[str, dict[str, float]]:
    return {r["direction"]: {k: r[k] for k in ("retain", "forget_label", "forget_any")} for r in records}


def run_table2(loaded: LoadedData, config: Table2Config, cache_dir: Path, console: Console) -> dict:
    """Every number of the table; methods with sampled data run once per seed, the rest once."""
    request = ForgetRequest(config.forget)
    part = partition(loaded.data, loaded.split, request)
    results: dict = {"per_seed": {}, "timings": {}, "diagnostics": {}}
    for bits in config.bits:
        original, cached = trained_reference(cache_dir, loaded, bits, config.recipe, config.training_seed,
                                             (), config.model_options)
        console.print(f"{bits} bits: Original {'from cache' if cached else 'trained'}")
        store = store_for(original, loaded)
        retrain = None
        for method in config.methods:
            seeds = config.seeds if method not in REFERENCE else [config.training_seed]
            for seed in seeds:
                started = time.perf_counter()
                if method == "original":
                    model, timing, diag = original.model, {}, {}
                elif method == "retrain":
                    retrain, cached = trained_reference(cache_dir, loaded, bits, config.recipe,
                                                        config.training_seed, config.forget, config.model_options)
                    model, timing = retrain.model, {"train": retrain.config["training"]["seconds"]}
                    diag = {"cached": cached}
                else:
                    unlearner = create_method(method, **config.method_options.get(method, {}))
                    new, outcome = run_method(unlearner, original, loaded, request, seed)
                    model, timing, diag = new.model, outcome.timings, outcome.diagnostics
                scores = _scores(evaluate_model(model, store, loaded.split, part))
                results["per_seed"].setdefault(method, {}).setdefault(str(bits), {})[str(seed)] = scores
                results["timings"].setdefault(method, {}).setdefault(str(bits), {})[str(seed)] = timing
                results["diagnostics"].setdefault(method, {}).setdefault(str(bits), {})[str(seed)] = diag
                console.print(f"  {LABELS.get(method, method)} seed {seed}: "
                              f"D_f {100 * scores['I2T'][PRIMARY_FORGET]:.1f}/{100 * scores['T2I'][PRIMARY_FORGET]:.1f} "
                              f"D_r {100 * scores['I2T']['retain']:.1f}/{100 * scores['T2I']['retain']:.1f} "
                              f"({time.perf_counter() - started:.1f} s)")
    results["summary"] = summarise(results["per_seed"], config)
    results["delta"] = deltas(results["summary"], config)
    results["forget"] = list(request.classes)
    results["partition"] = part.summary(loaded.data.class_names)
    results["config"] = {"bits": list(config.bits), "seeds": list(config.seeds), "methods": list(config.methods),
                         "recipe": config.recipe.to_dict(), "training_seed": config.training_seed,
                         "model_options": config.model_options, "method_options": config.method_options,
                         "dataset": loaded.spec.to_dict(), "primary_forget_metric": PRIMARY_FORGET,
                         "device": str(loaded.device or "cpu")}
    results["environment"] = environment_stamp()
    return results


def summarise(per_seed: dict, config: Table2Config) -> dict:
    """Mean and sample std (0 for a single run) per method, bits, direction and metric, in %."""
    summary: dict = {}
    for method, by_bits in per_seed.items():
        for bits, by_seed in by_bits.items():
            for direction in DIRECTIONS:
                for metric in ("retain", "forget_label", "forget_any"):
                    values = np.array([100 * s[direction][metric] for s in by_seed.values()])
                    entry = {"mean": float(values.mean()),
                             "std": float(values.std(ddof=1)) if values.size > 1 else 0.0, "n": int(values.size)}
                    summary.setdefault(method, {}).setdefault(f"{bits}-{direction}", {})[metric] = entry
    return summary


def deltas(summary: dict, config: Table2Config) -> dict:
    """|Delta| per method: D_f against Retrain, D_r against Original (percentage points)."""
    if "original" not in summary or "retrain" not in summary:
        return {}
    out = {}
    for method, settings in summary.items():
        forget = [abs(v[PRIMARY_FORGET]["mean"] - summary["retrain"][k][PRIMARY_FORGET]["mean"])
                  for k, v in settings.items()]
        retain = [abs(v["retain"]["mean"] - summary["original"][k]["retain"]["mean"]) for k, v in settings.items()]
        out[method] = {"forget": float(np.mean(forget)), "retain": float(np.mean(retain))}
    return out


def table_rows(results: dict, metric: str = PRIMARY_FORGET) -> tuple[list[str], list[list]]:
    methods = list(results["summary"])
    columns = ["Bits"] + [f"{LABELS.get(m, m)} {name}" for m in methods for name in ("D_f", "D_r")]
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
            row += ([f"{d['forget']:.2f}", f"{d['retain']:.2f}"] if m not in ("original", "retrain") else ["", ""])
        rows.append(row)
    return columns, rows


def write_table2(out: Path, results: dict, console: Console) -> None:
    columns, rows = table_rows(results)
    title = (f"Retrieval mAP (%) forgetting {', '.join(results['forget'])} on {results['config']['dataset']['name']}"
             " (D_f: forget-label relevance)")
    print_table(title, columns, rows, console)
    write_results(out, "results", results, columns, rows, title)
    any_columns, any_rows = table_rows(results, "forget_any")
    atomic_write_text(out / "results_any_label.md", f"# {title.replace('forget-label', 'any-label')}\n\n"
                      + markdown_table(any_columns, any_rows))
    from crossforget.experiments.figures import table2_chart

    table2_chart(results, out / "results.png")
