"""Where models run: ``--device auto|cpu|cuda`` resolution, batch placement and bf16 autocast."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from crossforget.core.errors import CrossforgetError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def _torchrun_local() -> tuple[int, int] | None:
    """(LOCAL_RANK, LOCAL_WORLD_SIZE) when torchrun started this process as one of several, else None."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    return int(os.environ.get("LOCAL_RANK", "0") or 0), int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def _local_gpu() -> torch.device:
    """The GPU of this process: the first one, or under torchrun the one of its local rank."""
    local = _torchrun_local()
    if local is None:
        return torch.device("cuda")
    if local[0] >= torch.cuda.device_count():
        raise CrossforgetError(
            f"torchrun started {local[1]} processes on this node but only {torch.cuda.device_count()} "
            f"GPU(s) are visible; use --nproc-per-node {torch.cuda.device_count()} (one process per GPU)"
        )
    return torch.device("cuda", local[0])


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks the first GPU when torch sees one, else the CPU; ``cuda[:N]`` must exist.

    Under torchrun (WORLD_SIZE > 1) ``auto`` and ``cuda`` mean the GPU of the local rank, one process
    per GPU; a fixed ``cuda:N`` is refused when several processes share the node.
    """
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    if text == "auto":
        return _local_gpu() if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise CrossforgetError(
                f"--device {text} was asked for but torch {torch.__version__} sees no CUDA GPU; "
                "use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU"
            )
        if text == "cuda":
            return _local_gpu()
        local = _torchrun_local()
        if local is not None and local[1] > 1:
            raise CrossforgetError(
                f"--device {text} would put all {local[1]} processes of this node on one GPU; use "
                "--device auto (each process takes the GPU of its LOCAL_RANK)"
            )
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CrossforgetError(
                f"--device {text}: only {torch.cuda.device_count()} GPU(s) visible; use cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        return device
    raise CrossforgetError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def to_device(batch: dict[str, torch.Tensor], device: torch.device | None) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (unchanged when None or already there)."""
    if device is None:
        return batch
    non_blocking = device.type == "cuda"
    return {key: value.to(device, non_blocking=non_blocking) for key, value in batch.items()}


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without parameters)."""
    for param in module.parameters():
        return param.device
    return torch.device("cpu")


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (forward passes of training and encoding); plain float32 elsewhere."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
