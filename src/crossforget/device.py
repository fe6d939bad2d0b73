"""Where models run: ``--device auto|cpu|cuda`` resolution, batch placement and bf16 autocast."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from crossforget.errors import CrossforgetError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks the first GPU when torch sees one, else the CPU; ``cuda[:N]`` must exist."""
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise CrossforgetError(
                f"--device {text} was asked for but torch {torch.__version__} sees no CUDA GPU; "
                "use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU"
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
