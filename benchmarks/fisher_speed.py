"""Time the Fisher estimators over the whole default small hashing model: batch, per_sample, per_sample_vmap.

The default ``small`` backbone (SmallCNN conv + BatchNorm image encoder, word-embedding text encoder,
Linear hash heads) at 32 bits, built as ``crossforget train`` builds it for the built-in ``scenes`` data
(48 px), with its BatchNorm running statistics set by a few train-mode forwards; the DSPH loss with
fixed proxies, as PPP uses it; ``--samples`` training items in batches of ``--batch``. Usage:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fisher_speed.py [--samples 256] [--batch 32] [--repeats 5]

``per_sample`` (Eq. 4, closed forms per layer) should stay within 2x of ``batch`` (median wall times, one
thread by default); ``per_sample_vmap`` is the exact torch.func reference, timed once. Every parameter
is estimated. Then exactness: the largest relative difference of ``per_sample`` from
``per_sample_vmap`` and from a loop taking each sample's gradient alone, and of the two per-sample
estimators on a float64 copy of the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: the machine is shared

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from crossforget.data.registry import DatasetSpec  # noqa: E402
from crossforget.losses.dsph import DSPHLoss  # noqa: E402
from crossforget.models.inputs import iterate_batches  # noqa: E402
from crossforget.tasks.hashing.training import initial_model, load_data, model_config  # noqa: E402
from crossforget.unlearning.fisher import counting_fallbacks, diagonal_fisher  # noqa: E402

Batch = dict[str, torch.Tensor]
TARGET = 2.0  # per_sample / batch, at most


def small_model(
    samples: int, batch: int, bits: int, device: torch.device, items: int | None = None
) -> tuple[nn.Module, DSPHLoss, list[Batch]]:
    """The default small model and loss on scenes, and ``samples`` training items as fixed batches.

    ``items``: a smaller scenes set than the default 10,000 (for a quick run); the vocabulary, hence the
    embedding table, then shrinks with it.
    """
    spec = (
        DatasetSpec("scenes")
        if items is None
        else DatasetSpec("scenes", {"num_items": items}, items // 5, items // 2)
    )
    loaded = load_data(spec, device=device)
    config = model_config(loaded.data, loaded.split, bits, {}, loaded.spec)
    torch.manual_seed(0)
    model, preprocessor = initial_model(config)
    model.to(device)
    store = loaded.store_for(preprocessor, device)
    batches = list(iterate_batches(store, loaded.split.train[:samples], batch))
    model.train()
    with torch.no_grad():  # realistic running statistics for the eval-mode BatchNorm
        for part in batches[:4]:
            model(part)
    loss = DSPHLoss(loaded.data.num_classes, bits).to(device)
    loss.proxies.requires_grad_(False)  # PPP holds the trained proxies fixed
    return model, loss, batches


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def one_at_a_time(model: nn.Module, loss: DSPHLoss, batches: list[Batch]) -> dict[str, torch.Tensor]:
    """Eq. 4 by definition: each sample's gradient alone with autograd, squared, averaged (eval mode)."""
    model.eval()
    named = dict(model.named_parameters())
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in named.items()}
    count = 0
    for batch in batches:
        for i in range(len(batch["labels"])):
            one = {key: value[i : i + 1] for key, value in batch.items()}
            grads = torch.autograd.grad(loss(model, one, reduction="none").sum(), list(named.values()))
            for name, g in zip(named, grads, strict=True):
                sums[name] += g.float().square()
            count += 1
    return {name: total / count for name, total in sums.items()}


def in_float64(
    model: nn.Module, loss: DSPHLoss, batches: list[Batch]
) -> tuple[nn.Module, DSPHLoss, list[Batch]]:
    double = [{k: v.double() if v.is_floating_point() else v for k, v in b.items()} for b in batches]
    return copy.deepcopy(model).double(), copy.deepcopy(loss).double(), double


def max_relative_difference(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    """Largest |got - want| of a parameter's Fisher, relative to the largest |want| of that parameter."""
    return max(float((got[n] - w).abs().max() / w.abs().max().clamp_min(1e-30)) for n, w in want.items())


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of batch and per_sample (median)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument(
        "--items", type=int, default=None, help="scenes items (default: the 10,000 of `train`)"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, loss, batches = small_model(args.samples, args.batch, args.bits, device, args.items)

    results: dict[str, dict[str, torch.Tensor]] = {}
    seconds: dict[str, list[float]] = {"batch": [], "per_sample": [], "per_sample_vmap": []}
    with counting_fallbacks() as counter:
        for estimator in seconds:  # warm-up
            diagonal_fisher(model, loss, batches[:1], estimator=estimator)
        generic_layers = counter.count
        for repeat in range(args.repeats):
            for estimator, times in seconds.items():
                if estimator == "per_sample_vmap" and repeat > 0:
                    continue  # the slow reference: once is enough

                def run(estimator: str = estimator) -> None:
                    results[estimator] = diagonal_fisher(model, loss, batches, estimator=estimator)

                times.append(timed(run, device))

    # Exactness: float32 against the definition, and both per-sample estimators again in float64. In
    # float32 a ReLU input within rounding of 0 can change sign between convolution kernels (torch.func
    # batches them differently), and the gradient jumps there; float64 leaves no such inputs.
    reference = one_at_a_time(model, loss, batches)
    model64, loss64, batches64 = in_float64(model, loss, batches)
    fast64 = diagonal_fisher(model64, loss64, batches64, estimator="per_sample")
    slow64 = diagonal_fisher(model64, loss64, batches64, estimator="per_sample_vmap")

    medians = {estimator: statistics.median(times) for estimator, times in seconds.items()}
    summary = {
        "samples": sum(len(b["labels"]) for b in batches),
        "batch_size": args.batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "seconds": medians,
        "ratio": medians["per_sample"] / medians["batch"],
        "vmap_ratio": medians["per_sample_vmap"] / medians["batch"],
        "target": TARGET,
        "passed": medians["per_sample"] / medians["batch"] <= TARGET,
        "max_relative_difference": {
            "per_sample_vs_vmap": max_relative_difference(results["per_sample"], results["per_sample_vmap"]),
            "per_sample_vs_one_at_a_time": max_relative_difference(results["per_sample"], reference),
            "vmap_vs_one_at_a_time": max_relative_difference(results["per_sample_vmap"], reference),
            "float64_per_sample_vs_vmap": max_relative_difference(fast64, slow64),
        },
        "generic_path_layers": generic_layers,
    }
    print(
        f"small model on scenes, {summary['parameters']:,} parameters, device={args.device} "
        f"threads={summary['threads']} samples={summary['samples']} batch={args.batch}"
    )
    for estimator, value in medians.items():
        print(f"{estimator:16s} {value * 1000:9.1f} ms   {value / medians['batch']:6.2f}x batch")
    verdict = "PASS" if summary["passed"] else "MISS"
    print(f"per_sample/batch: {summary['ratio']:.2f}x (target <= {TARGET:g}x) {verdict}")
    diff = summary["max_relative_difference"]
    print("max relative difference (per parameter, to its largest entry):")
    print(f"  float32 per_sample vs per_sample_vmap         {diff['per_sample_vs_vmap']:.2e}")
    print(f"  float32 per_sample vs one sample at a time    {diff['per_sample_vs_one_at_a_time']:.2e}")
    print(f"  float32 per_sample_vmap vs one at a time      {diff['vmap_vs_one_at_a_time']:.2e}")
    print(f"  float64 per_sample vs per_sample_vmap         {diff['float64_per_sample_vs_vmap']:.2e}")
    print(f"layers on the generic (vmap) path in per_sample: {generic_layers}")
    return summary


if __name__ == "__main__":
    main()
