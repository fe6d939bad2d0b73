"""Choose PPP's defaults on the validation split over a request panel (never on the test queries).

For every request and seed the Fishers are computed once (``PPP.plan``); then every alpha of the grid
is applied and scored on ``tune``'s validation split (database \\ train), and the forgetting guard is
run from every start alpha and forget tolerance of the grid. Each setting is judged by its worst
|Δ| over requests and seeds (D_f to Retrain, D_r to the Original, mAP points, mean over I2T/T2I).

    python scripts/select_ppp_defaults.py runs/original --out docs/results/ppp_selection.json
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from crossforget.core.io import atomic_write_json
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.validation import validation_split
from crossforget.experiments.panel import PANELS, panel_sets
from crossforget.tasks.hashing.columns import column_scores, open_checkpoints
from crossforget.tasks.hashing.task import hashing_task, store_for
from crossforget.unlearning.guard import GuardSettings, guarded_search
from crossforget.unlearning.methods import create_method
from crossforget.unlearning.methods.base import StageTimer
from crossforget.unlearning.methods.ppp_method import MIN_ALPHA
from crossforget.unlearning.ppp import apply_plan


def _mean_scores(scores: dict) -> tuple[float, float]:
    """(D_f forget-label, D_r) in %, mean over directions."""
    forget = 100 * np.mean([s["forget_label"] for s in scores.values()])
    retain = 100 * np.mean([s["retain"] for s in scores.values()])
    return float(forget), float(retain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--panel", default="default", choices=sorted(PANELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.5, 3, 5, 10, 20, 30, 60])
    parser.add_argument("--starts", type=float, nargs="+", default=[3, 10, 30])
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--estimator", default="per_sample")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkpoints = open_checkpoints(args.checkpoint, [args.bits], args.cache)
    saved, loaded, reference = checkpoints.saved[0], checkpoints.loaded, checkpoints.references[0]
    store = store_for(saved, loaded)
    validation = validation_split(loaded.split)
    records = []
    for names in panel_sets(PANELS[args.panel], checkpoints.class_names):
        request = ForgetRequest(names)
        part = partition(loaded.data, validation, request)
        task = hashing_task(saved, loaded, request)
        retrain, _ = reference.retrain(loaded, saved, names)
        truth_f, _ = _mean_scores(column_scores(retrain.model, store, validation, part))
        _, base_r = _mean_scores(column_scores(saved.model, store, validation, part))
        label = "+".join(names)
        for seed in args.seeds:
            started = time.perf_counter()
            method = create_method("ppp", estimator=args.estimator, retain_budget=None)
            clone, plans, _ = method.plan(saved.model, task, seed, StageTimer())
            fisher_seconds = time.perf_counter() - started

            memo: dict[float, dict] = {}

            def score(
                alpha: float, clone=clone, plans=plans, part=part, memo=memo, truth_f=truth_f, base_r=base_r
            ) -> dict:
                """Validation |Δ| at ``alpha`` (each alpha scored once per request and seed)."""
                if alpha in memo:
                    return dict(memo[alpha])
                sizes = apply_plan(clone, saved.model, plans, alpha)
                forget, retain = _mean_scores(column_scores(clone, store, validation, part))
                dampened = sum(v["B"] + v["C"] for v in sizes.values())
                memo[alpha] = {"alpha": alpha, "d_f": abs(forget - truth_f), "d_r": abs(retain - base_r),
                               "forget": forget, "retain": retain, "dampened": dampened}  # fmt: skip
                return dict(memo[alpha])

            grid = [score(alpha) for alpha in args.alphas]
            guarded = []
            highest = max(float(p.critical[p.critical.isfinite()].max()) for p in plans.values())
            for start in args.starts:
                for tolerance in args.tolerances:
                    settings = GuardSettings(forget_tolerance=tolerance)

                    def build(alpha: float, clone=clone, plans=plans) -> tuple:
                        sizes = apply_plan(clone, saved.model, plans, alpha)
                        return clone, sum(v["B"] + v["C"] for v in sizes.values())

                    apply_plan(clone, saved.model, plans, math.inf)  # the probe scores the original first
                    outcome = guarded_search(build, task.probe, clone, start, (MIN_ALPHA, highest), settings)
                    entry = score(outcome.alpha)
                    entry.update(start=start, tolerance=tolerance, acted_on=outcome.acted_on,
                                 met=outcome.met, steps=len(outcome.steps))  # fmt: skip
                    guarded.append(entry)
            records.append(
                {"request": label, "classes": len(names), "seed": seed, "retrain_forget": truth_f,
                 "original_retain": base_r, "grid": grid, "guarded": guarded,
                 "fisher_seconds": fisher_seconds, "seconds": time.perf_counter() - started}
            )  # fmt: skip
            print(
                f"{label:40s} seed {seed}: "
                + " ".join(f"a{g['alpha']:g}:{g['d_f']:.1f}/{g['d_r']:.1f}" for g in grid)
                + " | guard "
                + " ".join(
                    f"s{g['start']:g}t{g['tolerance']:g}:{g['d_f']:.1f}/{g['d_r']:.1f}" for g in guarded
                )
                + f" ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            atomic_write_json(
                args.out, {"records": records, "args": _args(args), "environment": environment_stamp()}
            )
    _summary(records)


def _args(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _summary(records: list[dict]) -> None:
    """Worst |Δ| over requests and seeds per setting, single-class and multi-class separately."""
    settings: dict = {}
    for record in records:
        kind = "single" if record["classes"] == 1 else "multi"
        for g in record["grid"]:
            settings.setdefault(("fixed", g["alpha"], None), {}).setdefault(kind, []).append(g)
        for g in record["guarded"]:
            settings.setdefault(("guard", g["start"], g["tolerance"]), {}).setdefault(kind, []).append(g)
    print("setting | single worst d_f / d_r | multi worst d_f / d_r | mean d_f / d_r")
    for key, kinds in settings.items():
        parts = []
        for kind in ("single", "multi"):
            rows = kinds.get(kind, [])
            worst_f = max((r["d_f"] for r in rows), default=math.nan)
            worst_r = max((r["d_r"] for r in rows), default=math.nan)
            parts.append(f"{worst_f:.2f} / {worst_r:.2f}")
        every = [r for rows in kinds.values() for r in rows]
        mean = f"{np.mean([r['d_f'] for r in every]):.2f} / {np.mean([r['d_r'] for r in every]):.2f}"
        print(f"{key} | {parts[0]} | {parts[1]} | {mean}")


if __name__ == "__main__":
    main()
