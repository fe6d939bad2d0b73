"""Why Fisher dampening collapses on multi-class requests: selection sizes under each Fisher estimator.

For each request and estimator variant this prints how many entries SSD (alpha 10, I_D over a sample
of D) and PPP (alpha 30, I_r over D_r) select, the median ratio I_f / I_r, the tensors that hold most
of the selection, and D_r / D_f mAP on the *validation* split (database \\ train, as `tune` uses;
never the test queries). Usage (an Original checkpoint folder from `crossforget train`):

    python scripts/collapse_analysis.py runs/original --bits 32 --out docs/results/collapse.json
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from crossforget.core.io import atomic_write_json
from crossforget.data.forget import ForgetRequest, partition
from crossforget.data.validation import validation_split
from crossforget.tasks.hashing.columns import open_checkpoints
from crossforget.tasks.hashing.evaluation import evaluate_model
from crossforget.tasks.hashing.task import hashing_task, store_for
from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import copy_model, sample_indices
from crossforget.unlearning.ssd import ssd_dampen

VARIANTS = {
    "batch": ("batch", 32, 0.8),
    "batch, no regulariser": ("batch", 32, 0.0),
    "batch, batch size 8": ("batch", 8, 0.8),
    "per_sample": ("per_sample", 32, 0.8),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--requests", nargs="+", default=["dog", "boat", "dog,boat"])
    parser.add_argument("--retain-samples", type=int, default=800)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    checkpoints = open_checkpoints(args.checkpoint, [args.bits], Path("runs/cache"))
    saved, loaded = checkpoints.saved[0], checkpoints.loaded
    store = store_for(saved, loaded)
    validation = validation_split(loaded.split)
    rows = []
    for text in args.requests:
        request = ForgetRequest(tuple(text.split(",")))
        task = hashing_task(saved, loaded, request)
        part = partition(loaded.data, validation, request)
        forget = sample_indices(task.train_forget, 80, 0, "forget")
        retain = sample_indices(task.train_retain, args.retain_samples, 1, "retain")
        everything = sample_indices(task.train_all, args.retain_samples, 2, "all")
        for variant, (estimator, batch, reg) in VARIANTS.items():
            loss = copy.deepcopy(task.loss)
            loss.alpha_reg = reg

            def fisher(indices: np.ndarray, loss=loss, estimator=estimator, batch=batch, task=task) -> dict:
                return diagonal_fisher(saved.model, loss, task.batches(indices, batch), estimator)

            i_f, i_r, i_d = fisher(forget), fisher(retain), fisher(everything)
            model = copy_model(saved.model)
            selected = ssd_dampen(model, i_f, i_d, alpha=10.0, lam=1.0)
            ratio = torch.cat([(i_f[n] / i_r[n].clamp_min(1e-30)).flatten() for n in i_f])
            ppp_count = int((ratio > 30.0).sum())
            top = sorted(selected.items(), key=lambda kv: -kv[1])[:4]
            scores = evaluate_model(model, store, validation, part)
            row = {
                "request": text,
                "variant": variant,
                "ssd_selected": int(sum(selected.values())),
                "ppp_outside_S_alpha30": ppp_count,
                "median_ratio_f_over_r": float(ratio.median()),
                "p99_ratio_f_over_r": float(ratio.quantile(0.99)) if ratio.numel() < 2**24 else None,
                "top_tensors": top,
                "ssd_validation": {
                    r["direction"]: {k: r[k] for k in ("retain", "forget_label")} for r in scores
                },
            }
            rows.append(row)
            v = row["ssd_validation"]
            print(
                f"{text:10s} {variant:24s} SSD {row['ssd_selected']:7d}  PPP(a30) {ppp_count:7d}  "
                f"median I_f/I_r {row['median_ratio_f_over_r']:.3g}  "
                f"SSD D_r {100 * v['I2T']['retain']:.1f}/{100 * v['T2I']['retain']:.1f}  "
                f"D_f {100 * v['I2T']['forget_label']:.1f}/{100 * v['T2I']['forget_label']:.1f}  "
                f"top {[(n, c) for n, c in top[:2]]}",
                flush=True,
            )
    if args.out:
        atomic_write_json(args.out, {"rows": rows, "checkpoint": str(args.checkpoint), "bits": args.bits})


if __name__ == "__main__":
    main()
