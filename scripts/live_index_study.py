"""Sequential forget requests on a live index: how D_f and D_r drift over five single-class requests.

For PPP and SSD, an index is built from the Original and five forget requests are sent one after
the other (each applies to the model the previous one left, through ``crossforget.index.forget``,
nothing deleted so the database stays whole); after each request the serving model is scored on
``tune``'s validation split (500 held-out database items not in the train split, against the rest of
the database; never the query split): D_f = validation queries carrying any class forgotten so far
(forget-label relevance), D_r = those carrying none. References: the Original on the same sets,
Retrain without all five classes (and, with ``--prefix-retrains``, without each prefix), and one
joint request forgetting the five classes at once.

The five classes are fixed before any result is seen, by a rule on the training split's label
counts: the five most frequent classes other than ``person`` (in 48 % of the images: forgetting it
would remove half the training set), ties by class-list order; requests go in that order.

    python scripts/live_index_study.py --checkpoint runs/original/bits32 --cache runs/cache \
        --out docs/results/live_index_study.json --figure docs/images/live_index_drift.png --prefix-retrains
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and FAISS load, as the CLI does

import argparse  # noqa: E402
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from crossforget.core.io import atomic_write_json, atomic_write_text
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.validation import validation_split
from crossforget.index.build import build_index
from crossforget.index.forget import IndexForgetRequest, forget
from crossforget.index.store import open_index
from crossforget.metrics.retrieval import unpack_codes
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.columns import ReferenceRecipe
from crossforget.tasks.hashing.evaluation import Codes, encode, retrieval_scores
from crossforget.tasks.hashing.task import store_for
from crossforget.tasks.hashing.training import load_data

METHODS = ("ppp", "ssd")
EXCLUDED_FROM_RULE = ("person",)


def choose_classes(labels: np.ndarray, train: np.ndarray, names: list[str], count: int = 5) -> list[str]:
    """The ``count`` most frequent classes of the training split, ``person`` left out, ties by class order."""
    frequency = labels[train].sum(axis=0)
    order = np.argsort(-frequency, kind="stable")
    return [names[i] for i in order if names[i] not in EXCLUDED_FROM_RULE][:count]


def scores(
    query: Codes, database: Codes, q_labels: np.ndarray, d_labels: np.ndarray, classes: list[int]
) -> dict:
    """{I2T, T2I: {D_f, D_r}} in mAP points (forget-label D_f over ``classes``)."""
    mask = q_labels[:, classes].any(axis=1)
    records = retrieval_scores(query, database, q_labels, d_labels, mask, classes)
    return {r["direction"]: {"D_f": 100 * r["forget_label"], "D_r": 100 * r["retain"]} for r in records}


def index_codes(index_dir: Path, rows: np.ndarray) -> Codes:
    """The serving version's codes of dataset items ``rows`` (sign codes, as the index holds them)."""
    version = open_index(index_dir)
    at = np.searchsorted(version.ids, rows)
    bits = int(version.meta["bits"])
    return Codes(
        torch.from_numpy(unpack_codes(version.codes("image")[at], bits)),
        torch.from_numpy(unpack_codes(version.codes("text")[at], bits)),
    )


def mean(entry: dict, key: str) -> float:
    return (entry["I2T"][key] + entry["T2I"][key]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="the Original (one bit length)")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"), help="Retrain checkpoints")
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--figure", type=Path, default=None, help="PNG of the drift")
    parser.add_argument("--markdown", type=Path, default=None, help="the table as Markdown")
    parser.add_argument("--classes", nargs="+", default=None, help="override the rule (default: rule)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every request")
    parser.add_argument("--prefix-retrains", action="store_true", help="also Retrain without each prefix")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--from-json", action="store_true", help="only redraw the table and figure from --out (no runs)"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        import json

        results = json.loads(args.out.read_text())
        write_outputs(results, args)
        return 0
    started = time.perf_counter()

    saved = load_hashing_checkpoint(args.checkpoint)
    loaded = load_data(saved.dataset_spec)
    loaded.check(saved.config, args.checkpoint)
    data, split = loaded.data, loaded.split
    classes = args.classes or choose_classes(data.labels, split.train, data.class_names)
    frequency = {c: int(data.labels[split.train][:, data.class_names.index(c)].sum()) for c in classes}
    print(f"classes (rule: most frequent in train, person left out): {classes} {frequency}", flush=True)
    val = validation_split(split)
    q_labels, d_labels = data.labels[val.query], data.labels[val.database]
    indices = [data.class_names.index(c) for c in classes]
    prefixes = [indices[: k + 1] for k in range(len(indices))]
    store = store_for(saved, loaded)

    def model_scores(model: torch.nn.Module) -> list[dict]:
        query, database = encode(model, store, val.query), encode(model, store, val.database)
        return [scores(query, database, q_labels, d_labels, p) for p in prefixes]

    results: dict = {
        "classes": classes,
        "train_frequency": frequency,
        "rule": "the five most frequent classes of the training split other than person, ties by class order",
        "seed": args.seed,
        "methods": list(args.methods),
        "validation": {"queries": int(val.query.size), "database": int(val.database.size), "seed": 0},
        "original": model_scores(saved.model),
        "retrain": {},
        "sequential": {},
        "joint": {},
        "timings": {},
    }
    reference = ReferenceRecipe.of_checkpoint(saved, args.cache)
    wanted = range(len(prefixes)) if args.prefix_retrains else [len(prefixes) - 1]
    for k in wanted:
        exclude = [data.class_names[i] for i in prefixes[k]]
        t = time.perf_counter()
        retrain, cached = reference.retrain(loaded, saved, exclude)
        query, database = encode(retrain.model, store, val.query), encode(retrain.model, store, val.database)
        results["retrain"][str(k + 1)] = {
            "exclude": exclude,
            "cached": cached,
            "training_seconds": retrain.config["training"]["seconds"],
            "scores": scores(query, database, q_labels, d_labels, prefixes[k]),
        }
        how = "cached" if cached else "trained"
        print(f"Retrain without {exclude}: {how} ({time.perf_counter() - t:.0f} s)", flush=True)

    work = Path(tempfile.mkdtemp(prefix="live-index-study-"))
    try:
        rows = np.union1d(val.query, val.database)
        for method in args.methods:
            index = work / f"{method}-sequential"
            build_index(args.checkpoint, saved, loaded, index)
            steps = []
            for k, name in enumerate(classes):
                request = IndexForgetRequest(classes=[name], method=method, seed=args.seed)
                record = forget(index, request, log=lambda text: None)
                codes = index_codes(index, rows)
                at_q, at_d = np.searchsorted(rows, val.query), np.searchsorted(rows, val.database)
                query = Codes(codes.image[at_q], codes.text[at_q])
                database = Codes(codes.image[at_d], codes.text[at_d])
                step = {
                    "request": name,
                    "scores": scores(query, database, q_labels, d_labels, prefixes[k]),
                    "durations": record["durations"],
                    "guard": record["method_diagnostics"].get("guard"),
                    "verification": record["verification"],
                }
                steps.append(step)
                seconds = record["durations"]["total_before_commit"]
                print(
                    f"{method} request {k + 1} ({name}): D_f {mean(step['scores'], 'D_f'):.1f} "
                    f"D_r {mean(step['scores'], 'D_r'):.1f} ({seconds:.0f} s)",
                    flush=True,
                )
            results["sequential"][method] = steps
            index = work / f"{method}-joint"
            build_index(args.checkpoint, saved, loaded, index)
            record = forget(
                index, IndexForgetRequest(classes=classes, method=method, seed=args.seed), log=print
            )
            codes = index_codes(index, rows)
            at_q, at_d = np.searchsorted(rows, val.query), np.searchsorted(rows, val.database)
            joint = scores(
                Codes(codes.image[at_q], codes.text[at_q]),
                Codes(codes.image[at_d], codes.text[at_d]),
                q_labels,
                d_labels,
                prefixes[-1],
            )
            results["joint"][method] = {
                "scores": joint,
                "durations": record["durations"],
                "guard": record["method_diagnostics"].get("guard"),
            }
            print(f"{method} joint: D_f {mean(joint, 'D_f'):.1f} D_r {mean(joint, 'D_r'):.1f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results["table"] = table(results)
    results["timings"]["total_seconds"] = time.perf_counter() - started
    results["checkpoint"] = str(args.checkpoint)
    results["environment"] = {**environment_stamp(), "faiss": faiss_version()}
    atomic_write_json(args.out, results)
    write_outputs(results, args)
    return 0


def write_outputs(results: dict, args: argparse.Namespace) -> None:
    markdown = markdown_table(results)
    print(markdown)
    if args.markdown is not None:
        atomic_write_text(args.markdown, markdown + "\n")
    if args.figure is not None:
        figure(results, args.figure)


def faiss_version() -> str:
    import faiss

    return faiss.__version__


def table(results: dict) -> list[dict]:
    """One row per request: mean of I2T and T2I, |Δ| D_f against Retrain where it exists, D_r against
    the Original."""
    rows = []
    for k, name in enumerate(results["classes"]):
        row: dict = {"step": k + 1, "request": name, "original": {}, "retrain": None}
        original = results["original"][k]
        row["original"] = {"D_f": mean(original, "D_f"), "D_r": mean(original, "D_r")}
        retrain = results["retrain"].get(str(k + 1))
        if retrain is not None:
            row["retrain"] = {"D_f": mean(retrain["scores"], "D_f"), "D_r": mean(retrain["scores"], "D_r")}
        for method, steps in results["sequential"].items():
            s = steps[k]["scores"]
            entry = {"D_f": mean(s, "D_f"), "D_r": mean(s, "D_r")}
            entry["delta_D_r"] = abs(entry["D_r"] - row["original"]["D_r"])
            entry["delta_D_f"] = abs(entry["D_f"] - row["retrain"]["D_f"]) if row["retrain"] else None
            row[method] = entry
        rows.append(row)
    return rows


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def markdown_table(results: dict) -> str:
    methods = list(results["sequential"])
    head = ["request", "Original D_f", "Original D_r", "Retrain D_f", "Retrain D_r"]
    for m in methods:
        name = m.upper()
        head += [f"{name} D_f", f"{name} D_r", f"{name} \\|Δ\\| D_f", f"{name} \\|Δ\\| D_r"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["table"]:
        cum = " + ".join(results["classes"][: row["step"]])
        cells = [f"{row['step']}: {cum}", _cell(row["original"]["D_f"]), _cell(row["original"]["D_r"])]
        cells += [_cell(row["retrain"]["D_f"]), _cell(row["retrain"]["D_r"])] if row["retrain"] else ["", ""]
        for m in methods:
            e = row[m]
            cells += [_cell(e["D_f"]), _cell(e["D_r"]), _cell(e["delta_D_f"]), f"{e['delta_D_r']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    last = results["table"][-1]
    cells = ["joint request (all five)", "", "", "", ""]
    for m in methods:
        j = results["joint"][m]["scores"]
        d_f, d_r = mean(j, "D_f"), mean(j, "D_r")
        delta_f = abs(d_f - last["retrain"]["D_f"]) if last["retrain"] else None
        cells += [_cell(d_f), _cell(d_r), _cell(delta_f), f"{abs(d_r - last['original']['D_r']):.1f}"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in results["table"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in ((axes[0], "D_f", "D_f mAP (forget label), %"), (axes[1], "D_r", "D_r mAP, %")):
        ax.plot(steps, [r["original"][key] for r in results["table"]], "k--", label="Original")
        retrain = [(r["step"], r["retrain"][key]) for r in results["table"] if r["retrain"]]
        if retrain:
            ax.plot(*zip(*retrain, strict=True), "ks-", label="Retrain")
        for method, style in zip(results["sequential"], ("C0o-", "C3^-"), strict=False):
            ax.plot(
                steps, [r[method][key] for r in results["table"]], style, label=f"{method.upper()} sequential"
            )
            joint = results["joint"][method]["scores"]
            ax.plot(
                [steps[-1] + 0.15],
                [mean(joint, key)],
                style[:3],
                markersize=11,
                fillstyle="none",
                linestyle="none",
                label=f"{method.upper()} joint (all five at once)",
            )
        ax.set_xticks(steps, [f"+{c}" if i else c for i, c in enumerate(results["classes"])], rotation=20)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Five sequential forget requests on a live index (scenes, 32 bits, validation split)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


if __name__ == "__main__":
    raise SystemExit(main())
