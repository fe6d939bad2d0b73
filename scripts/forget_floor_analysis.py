"""Which forget floor predicts Retrain? Chance vs the retained-label oracle, on the guard's own probe.

For every request of a panel this scores the Original and the cached Retrain on the forgetting
guard's held-out probe (validation pool, never the test queries) and prints both candidate floors and
the guard target each gives at the default tolerance. A floor is good when Retrain's probe score sits
near it: then "forgotten" means "as forgotten as a model that never saw the class".

    python scripts/forget_floor_analysis.py runs/original --out docs/results/forget_floor.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossforget.core.io import atomic_write_json
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest, partition
from crossforget.experiments.panel import PANELS, panel_sets
from crossforget.tasks.hashing.columns import open_checkpoints
from crossforget.tasks.hashing.probe import hashing_probe
from crossforget.tasks.hashing.task import store_for
from crossforget.unlearning.methods.ppp_method import PPPOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--panel", default="default", choices=sorted(PANELS))
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkpoints = open_checkpoints(args.checkpoint, [args.bits], args.cache)
    saved, loaded, reference = checkpoints.saved[0], checkpoints.loaded, checkpoints.references[0]
    store = store_for(saved, loaded)
    tolerance = PPPOptions().forget_tolerance
    rows = []
    print(
        "request | Original | Retrain | chance floor (target) | oracle floor (target)  [probe forget mAP, %]"
    )
    for names in panel_sets(PANELS[args.panel], checkpoints.class_names):
        part = partition(loaded.data, loaded.split, ForgetRequest(names))
        retrain, _ = reference.retrain(loaded, saved, names)
        probes = {
            kind: hashing_probe(store, loaded.split, part, floor=kind) for kind in ("chance", "cooccurrence")
        }
        original = probes["chance"].score(saved.model).forget
        row = {"request": "+".join(names), "original": original,
               "retrain": probes["chance"].score(retrain.model).forget}  # fmt: skip
        for kind, probe in probes.items():
            row[kind] = probe.forget_floor
            row[f"{kind}_target"] = probe.forget_floor + tolerance * max(original - probe.forget_floor, 0.0)
        rows.append(row)
        print(
            f"{row['request']} | {100 * original:.1f} | {100 * row['retrain']:.1f} | "
            f"{100 * row['chance']:.1f} ({100 * row['chance_target']:.1f}) | "
            f"{100 * row['cooccurrence']:.1f} ({100 * row['cooccurrence_target']:.1f})",
            flush=True,
        )
    record = {"rows": rows, "tolerance": tolerance, "bits": args.bits, "checkpoint": str(args.checkpoint)}
    atomic_write_json(args.out, {**record, "environment": environment_stamp()})


if __name__ == "__main__":
    main()
