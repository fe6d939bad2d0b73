"""Time the Fisher estimators on DSPH-style hash heads: batch vs per_sample (hooks) vs per_sample_vmap.

Two heads tanh(Linear(512 -> bits)) on random image / text features, a cosine-to-proxies loss like
DSPH's class terms, 4,096 samples in batches of 128. Usage:

    .venv/bin/python benchmarks/fisher_speed.py [--device cpu] [--repeats 3]

The hook path should stay within 2x of ``batch``; ``per_sample_vmap`` is the exact but slow reference.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from crossforget.unlearning.fisher import diagonal_fisher

Batch = dict[str, torch.Tensor]


class HashHeads(nn.Module):
    def __init__(self, features: int, bits: int) -> None:
        super().__init__()
        self.image = nn.Linear(features, bits)
        self.text = nn.Linear(features, bits)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.image(batch["image"])), torch.tanh(self.text(batch["text"]))


class ProxyLoss:
    """Per sample: mean over its labels of (1 - cos) + mean over the others of relu(cos - margin)."""

    def __init__(self, proxies: torch.Tensor, margin: float) -> None:
        self.proxies = F.normalize(proxies, dim=1)
        self.margin = margin

    def _terms(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(codes, dim=1) @ self.proxies.T
        positive = ((1 - cos) * labels).sum(1) / labels.sum(1)
        negative = (torch.relu(cos - self.margin) * (1 - labels)).sum(1) / (1 - labels).sum(1).clamp(min=1)
        return positive + negative

    def __call__(self, model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        image, text = model(batch)
        per_sample = self._terms(image, batch["labels"]) + self._terms(text, batch["labels"])
        return per_sample.mean() if reduction == "mean" else per_sample


def make_data(samples: int, features: int, classes: int, batch: int, device: str) -> list[Batch]:
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(samples, classes, generator=g) < 0.1).float()
    labels[torch.arange(samples), torch.randint(0, classes, (samples,), generator=g)] = 1.0  # >= 1 label
    image = torch.randn(samples, features, generator=g)
    text = image + 0.5 * torch.randn(samples, features, generator=g)
    data = {"image": image, "text": text, "labels": labels}
    return [{k: v[i : i + batch].to(device) for k, v in data.items()} for i in range(0, samples, batch)]


def best_time(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--bits", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    features, classes = 512, 24
    model = HashHeads(features, args.bits).to(args.device)
    loss = ProxyLoss(torch.randn(classes, args.bits, device=args.device), margin=0.125)
    loader = make_data(args.samples, features, classes, args.batch, args.device)

    results = {}
    timings = {}
    for estimator in ("batch", "per_sample", "per_sample_vmap"):
        diagonal_fisher(model, loss, loader[:2], estimator=estimator)  # warm-up

        def run(estimator: str = estimator) -> None:
            results[estimator] = diagonal_fisher(model, loss, loader, estimator=estimator)

        timings[estimator] = best_time(run, args.repeats, args.device)

    worst = max(
        float((results["per_sample"][n] - v).abs().max() / v.abs().max())
        for n, v in results["per_sample_vmap"].items()
    )
    print(f"device={args.device} threads={torch.get_num_threads()} samples={args.samples} batch={args.batch}")
    for estimator, seconds in timings.items():
        ratio = seconds / timings["batch"]
        print(f"{estimator:16s} {seconds * 1000:9.1f} ms   {ratio:6.2f}x batch")
    print(f"per_sample vs per_sample_vmap: max relative difference {worst:.2e}")


if __name__ == "__main__":
    main()
