"""Tune SSD on the validation split over a request panel, so PPP is also compared with a tuned SSD.

SSD keeps its reference defaults (alpha 10, lambda 1) as the paper's baseline; this script gives it
the same protocol PPP's defaults came from: every (alpha, lambda) of a grid runs the whole panel with
`crossforget sweep requests --score-on validation` (tune's split, database \\ train: never the test
queries), and the setting with the smallest worst case wins. The worst case of a setting is the
largest |Δ| over requests and seeds of either row (D_f to Retrain, D_r to the Original), so a setting
that collapses one request loses however well it does on average. Retrains come from the cache.

    python scripts/select_ssd_defaults.py runs/original --work runs/ssd-selection \\
        --out docs/results/ssd_selection.json
    crossforget sweep requests --checkpoint runs/original --methods ssd \\
        --ssd-params runs/ssd-selection/best.json --out runs/panel-test-ssd-tuned
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from crossforget.cli import main as crossforget
from crossforget.core.io import atomic_write_json
from crossforget.core.reproducibility import environment_stamp


def run_setting(args: argparse.Namespace, alpha: float, lam: float) -> dict:
    """The validation panel of SSD at (alpha, lam): its panel.json, run once (kept in --work)."""
    out = args.work / f"alpha{alpha:g}-lam{lam:g}"
    panel = out / "panel.json"
    if not panel.exists():
        code = crossforget(
            ["sweep", "requests", "--checkpoint", str(args.checkpoint), "--panel", args.panel,
             "--methods", "ssd", "--seeds", *map(str, args.seeds), "--bits", str(args.bits),
             "--score-on", "validation", "--cache", str(args.cache), "--out", str(out), "--overwrite",
             "--method-option", f"ssd.alpha={alpha:g}", "--method-option", f"ssd.lam={lam:g}"]
        )  # fmt: skip
        if code != 0:
            raise SystemExit(f"the sweep at alpha {alpha:g}, lambda {lam:g} failed (exit {code})")
    return json.loads(panel.read_text())


def summarise(alpha: float, lam: float, panel: dict) -> dict:
    """Worst and mean-of-worst |Δ| per row, and the setting's worst case over both rows."""
    overall = panel["overall"]["ssd"]
    return {
        "alpha": alpha,
        "lam": lam,
        "forget": overall["forget"],
        "retain": overall["retain"],
        "worst": max(overall["forget"]["worst"], overall["retain"]["worst"]),
        "mean_of_worst": (overall["forget"]["mean_of_worst"] + overall["retain"]["mean_of_worst"]) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the Original's folder (bits<B>/)")
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--panel", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1, 3, 10, 30, 100])
    parser.add_argument("--lams", type=float, nargs="+", default=[0.1, 1])
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--work", type=Path, required=True, help="folder of the per-setting panels")
    parser.add_argument("--out", type=Path, required=True, help="selection record (JSON)")
    args = parser.parse_args()
    rows = [
        summarise(alpha, lam, run_setting(args, alpha, lam))
        for alpha, lam in itertools.product(args.alphas, args.lams)
    ]
    best = min(rows, key=lambda r: (r["worst"], r["mean_of_worst"]))
    print("alpha | lambda | worst |Δ| D_f | worst |Δ| D_r | mean of worst D_f / D_r")
    for r in rows:
        mark = " <- selected" if r is best else ""
        print(
            f"{r['alpha']:g} | {r['lam']:g} | {r['forget']['worst']:.2f} ({r['forget']['worst_request']}) | "
            f"{r['retain']['worst']:.2f} ({r['retain']['worst_request']}) | "
            f"{r['forget']['mean_of_worst']:.2f} / {r['retain']['mean_of_worst']:.2f}{mark}"
        )
    atomic_write_json(args.work / "best.json", {"alpha": best["alpha"], "lam": best["lam"]})
    record = {"rows": rows, "selected": {"alpha": best["alpha"], "lam": best["lam"]},
              "criterion": "smallest worst |Δ| over requests, seeds and both rows; then mean of worst",
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "environment": environment_stamp()}  # fmt: skip
    atomic_write_json(args.out, record)


if __name__ == "__main__":
    main()
