"""Items per second of training and of the Fisher pass at 1, 2, ... processes (torch.distributed).

Each process runs one torch thread, in one gloo group (file rendezvous, no port), on the default small
hashing model (``crossforget train``'s, 32 bits) over the built-in scenes data: ``--train-items``
training items for ``--epochs`` epochs in global batches of ``--batch`` (per rank: batch / N), then the
per-sample Fisher over ``--fisher-samples`` items in mini-batches of 32, sharded as ``unlearn`` shards
it. Every run does the same global work, so items/s at N processes over items/s at 1 is the speed-up
(medians of ``--repeats`` interleaved runs; the JSON keeps each run and the range). Usage:

    .venv/bin/python benchmarks/distributed_scaling.py [--worlds 1 2] [--repeats 3] [--json out.json]

On a CPU with gloo, N processes bring N cores (if the machine has them free) but pay for every
all-reduce through local sockets, for the all-gathers of codes, and for the BatchNorm statistics of
the global batch (two all-reduces per layer and step): expect overhead there, not the speed-up of
GPUs with nccl. The script reports what it measures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: the machine is shared

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import torch  # noqa: E402


def measure(rank: int, world: int, options: dict) -> dict:
    """One rank's timings of the training loop and of the Fisher pass (after a warm-up step each)."""
    from crossforget.data.registry import DatasetSpec
    from crossforget.engine.training import TrainingRecipe, train_model
    from crossforget.losses.dsph import DSPHLoss
    from crossforget.models.inputs import iterate_batches
    from crossforget.tasks.hashing.training import initial_model, load_data, model_config
    from crossforget.unlearning.methods.common import fisher_over

    items = options["items"]
    loaded = load_data(DatasetSpec("scenes", {"num_items": items}, items // 5, options["train_items"]))
    config = model_config(loaded.data, loaded.split, 32, {}, loaded.spec)
    torch.manual_seed(0)
    model, preprocessor = initial_model(config)
    store = loaded.store_for(preprocessor)
    loss = DSPHLoss(loaded.data.num_classes, 32)
    train = loaded.split.train
    warm = TrainingRecipe(epochs=1, batch_size=options["batch"])
    train_model(model, loss, store, train[: options["batch"]], warm, seed=1, show_progress=False)
    recipe = TrainingRecipe(epochs=options["epochs"], batch_size=options["batch"])
    started = time.perf_counter()
    train_model(model, loss, store, train, recipe, seed=0, show_progress=False)
    train_seconds = time.perf_counter() - started
    loss.proxies.requires_grad_(False)
    task = SimpleNamespace(loss=loss, batches=lambda indices, size: iterate_batches(store, indices, size))
    samples = train[: options["fisher_samples"]]
    fisher_over(model, task, samples[:32], "per_sample", 32, "warm-up")
    started = time.perf_counter()
    fisher_over(model, task, samples, "per_sample", 32, "benchmark")
    fisher_seconds = time.perf_counter() - started
    return {"train_seconds": train_seconds, "fisher_seconds": fisher_seconds, "train_items": int(len(train))}


def _child(rank: int, world: int, folder: str, options: dict) -> None:
    torch.set_num_threads(1)
    if world > 1:
        import torch.distributed as dist

        rendezvous = f"file://{folder}/rendezvous"
        dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        result = measure(rank, world, options)
    finally:
        if world > 1:
            dist.destroy_process_group()
    with open(Path(folder) / f"rank{rank}.pkl", "wb") as handle:
        pickle.dump(result, handle)


def run(world: int, options: dict) -> dict:
    """The slowest rank's timings (the run takes as long as its slowest rank) as items per second."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_child, args=(world, folder, options), nprocs=world, start_method="spawn")
        ranks = [pickle.loads((Path(folder) / f"rank{r}.pkl").read_bytes()) for r in range(world)]
    train = max(r["train_seconds"] for r in ranks)
    fisher = max(r["fisher_seconds"] for r in ranks)
    return {
        "world_size": world,
        "train_items_per_second": ranks[0]["train_items"] * options["epochs"] / train,
        "fisher_items_per_second": options["fisher_samples"] / fisher,
        "train_seconds": train,
        "fisher_seconds": fisher,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2], help="process counts (default 1 2)")
    parser.add_argument("--items", type=int, default=4000, help="scenes items (default 4000)")
    parser.add_argument("--train-items", type=int, default=2048, help="training items (default 2048)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128, help="global batch size (default 128)")
    parser.add_argument("--fisher-samples", type=int, default=512, help="Fisher samples (default 512)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per count (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    options = {
        "items": args.items,
        "train_items": args.train_items,
        "epochs": args.epochs,
        "batch": args.batch,
        "fisher_samples": args.fisher_samples,
    }
    # Interleaved repeats, median per process count: on shared cores one run says little.
    runs: dict[int, list[dict]] = {world: [] for world in args.worlds}
    for _ in range(args.repeats):
        for world in args.worlds:
            runs[world].append(run(world, options))
    rows = []
    for world, measured in runs.items():
        row = {"world_size": world, "repeats": measured}
        for key in ("train_items_per_second", "fisher_items_per_second"):
            values = [m[key] for m in measured]
            row[key], row[key + "_range"] = statistics.median(values), [min(values), max(values)]
        rows.append(row)
    base = rows[0]
    header = f"{'processes':>9} {'train items/s':>14} {'ratio':>6} {'Fisher items/s':>15} {'ratio':>6}"
    print(header + "  (medians)")
    for row in rows:
        row["train_ratio"] = row["train_items_per_second"] / base["train_items_per_second"]
        row["fisher_ratio"] = row["fisher_items_per_second"] / base["fisher_items_per_second"]
        print(
            f"{row['world_size']:>9} {row['train_items_per_second']:>14.1f} {row['train_ratio']:>6.2f} "
            f"{row['fisher_items_per_second']:>15.1f} {row['fisher_ratio']:>6.2f}"
        )
    from crossforget.core.reproducibility import environment_stamp

    payload = {
        "options": options,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
        "environment": environment_stamp(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
