"""More than one process: PyTorch's own engine (torch.distributed), launched by ``torchrun``.

Only a process started by torchrun as one of several (``WORLD_SIZE`` > 1) ever joins a process group;
everywhere else every function here is a no-op and the single-process code path runs unchanged.

What the rest of the package uses:

- ``session(device)``: join the group from torchrun's environment (nccl on CUDA, gloo on the CPU),
  leave it at the end; ``rank()``, ``world_size()``, ``is_main()``, ``barrier()``.
- ``shard_slice`` / ``shard_batches``: this rank's contiguous block of items or of whole mini-batches,
  so that every mini-batch is the one a single process would form and blocks concatenate in item order.
- ``gather_rows``: concatenate every rank's rows in rank (= item) order; sizes may differ.
- ``all_reduce_sum_``, ``broadcast_``: in place, flattened into one buffer per dtype.
- ``agree``: a value (e.g. "found in the cache") every rank must share, or a one-line error.
- ``main_process_only``: the decorated function runs on rank 0 alone.
- ``TrainingReplica``: DistributedDataParallel around a model, with BatchNorm statistics and dropout
  masks of the *global* batch and the model outputs gathered (with gradient) for the loss, so that
  N ranks follow the single-process trajectory (see the class).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from crossforget.core.errors import CrossforgetError

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise CrossforgetError(f"environment variable {name}={value!r} is not an integer; unset it") from None


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def is_active() -> bool:
    """Whether this process is in a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes results, checkpoints and logs."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def init(device: torch.device) -> None:
    """Join the process group described by torchrun's environment (a no-op outside torchrun)."""
    if not launched() or dist.is_initialized():
        return
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise CrossforgetError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set; start several "
            "processes with `torchrun --nproc-per-node N -m crossforget.cli ...` (or unset WORLD_SIZE)"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Inside torchrun: be one rank of the group for the duration of the block; elsewhere: nothing."""
    init(device)
    try:
        yield
    finally:
        shutdown()


def barrier() -> None:
    """Wait until every rank arrives (before rank 0 publishes results: a failed rank never arrives)."""
    if is_active():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective buffers must live: the rank's GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard_slice(count: int, position: tuple[int, int] | None = None) -> slice:
    """This rank's contiguous part of ``count`` items; parts differ in size by at most one.

    ``position`` is (rank, world size), by default this process's.
    """
    me, size = position if position is not None else (rank(), world_size())
    base, extra = divmod(count, size)
    start = me * base + min(me, extra)
    return slice(start, start + base + (1 if me < extra else 0))


def shard_batches(indices: np.ndarray, batch_size: int) -> np.ndarray:
    """This rank's block of whole mini-batches of ``indices`` (in order; the short last batch, if any,
    ends the last non-empty block), so batching the block gives exactly the single-process batches."""
    indices = np.asarray(indices)
    batches = -(-len(indices) // batch_size)
    part = shard_slice(batches)
    return indices[part.start * batch_size : min(len(indices), part.stop * batch_size)]


def _gather_sizes(rows: int) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.int64, device=_comm_device()) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([rows], dtype=torch.int64, device=_comm_device()))
    return [int(s.item()) for s in sizes]


def _gather_padded(tensor: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """All ranks' rows concatenated in rank order; ``sizes`` are the ranks' row counts."""
    device = tensor.device
    local = tensor.detach().to(_comm_device()).contiguous()
    largest = max(sizes)
    if local.shape[0] < largest:
        pad = local.new_zeros((largest - local.shape[0], *local.shape[1:]))
        local = torch.cat([local, pad])
    parts = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(parts, local)
    return torch.cat([part[:rows] for part, rows in zip(parts, sizes, strict=True)]).to(device)


def gather_rows(tensor: torch.Tensor | None, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """Every rank's rows (dim 0) concatenated in rank order, on every rank, without gradient.

    Ranks may hold different numbers of rows; ``None`` stands for no rows at all (a rank left without
    work), then the shape and dtype come from the other ranks. ``sizes``: the row counts when known.
    Outside a process group the tensor itself is returned.
    """
    if not is_active():
        if tensor is None:
            raise CrossforgetError("nothing to gather: no rows on the only process")
        return tensor
    if sizes is None:
        meta = None if tensor is None else (int(tensor.shape[0]), tuple(tensor.shape[1:]), tensor.dtype)
        metas: list[Any] = [None] * world_size()
        dist.all_gather_object(metas, meta)
        known = [m for m in metas if m is not None and m[0] > 0] or [m for m in metas if m is not None]
        if not known:
            raise CrossforgetError("nothing to gather: no rank holds any rows")
        if tensor is None:
            tensor = torch.empty((0, *known[0][1]), dtype=known[0][2])
        sizes = [0 if m is None else m[0] for m in metas]
    return _gather_padded(tensor, sizes)


class _GatherWithGradient(torch.autograd.Function):
    """Forward: every rank's rows in rank order. Backward: the sum over ranks of the gradient of the
    gathered tensor, this rank's rows (the semantics of torch.distributed.nn's all_gather, with
    uneven sizes and on every backend)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        me = rank()
        ctx.rows = slice(sum(sizes[:me]), sum(sizes[: me + 1]))
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        total = grad.detach().to(_comm_device()).contiguous().clone()
        dist.all_reduce(total)
        return total[ctx.rows].to(grad.device), None


class _AllReduceWithGradient(torch.autograd.Function):
    """Sum over the ranks; the gradient of each rank's input is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().to(_comm_device()).contiguous().clone()
        dist.all_reduce(total)
        return total.to(tensor.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.detach().to(_comm_device()).contiguous().clone()
        dist.all_reduce(total)
        return total.to(grad.device)


def gather_rows_with_gradient(tensor: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """``gather_rows`` that gradients flow back through (to this rank's rows, summed over ranks)."""
    return _GatherWithGradient.apply(tensor, tuple(sizes))


def _flat_groups(tensors: Sequence[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    return groups


def _collective_(tensors: Sequence[torch.Tensor], run: Callable[[torch.Tensor], None]) -> None:
    for group in _flat_groups(tensors).values():
        flat = torch.cat([t.detach().reshape(-1) for t in group]).to(_comm_device())
        run(flat)
        offset = 0
        for tensor in group:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


@torch.no_grad()
def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its sum over the ranks (one collective per dtype and device)."""
    if is_active() and tensors:
        _collective_(tensors, lambda flat: dist.all_reduce(flat))


@torch.no_grad()
def broadcast_(tensors: Sequence[torch.Tensor], source: int = 0) -> None:
    """Give every rank ``source``'s values of the tensors, in place."""
    if is_active() and tensors:
        _collective_(tensors, lambda flat: dist.broadcast(flat, source))


def agree(value: T, what: str) -> T:
    """``value``, after checking every rank holds the same one (else a one-line error naming ``what``)."""
    if not is_active():
        return value
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        listed = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise CrossforgetError(f"{what} differs between the ranks ({listed})")
    return value


def main_process_only(function: Callable[..., T]) -> Callable[..., T | None]:
    """Run ``function`` on rank 0 only; other ranks get None (for writers: they never write)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return function(*args, **kwargs) if is_main() else None

    return wrapper


# --- data-parallel training ----------------------------------------------------------------------


@dataclass
class _Rows:
    """Where this rank's rows sit in the current global batch (set once per step)."""

    sizes: list[int] = field(default_factory=list)
    rank: int = 0

    @property
    def start(self) -> int:
        return sum(self.sizes[: self.rank])

    @property
    def local(self) -> int:
        return self.sizes[self.rank]

    @property
    def total(self) -> int:
        return sum(self.sizes)


class GlobalBatchNorm(nn.Module):
    """A BatchNorm layer normalising with the statistics of the global batch (all ranks' rows).

    torch's SyncBatchNorm refuses CPU tensors, so this one (two all-reduces per layer in the forward
    pass: the sums, then the centred squares, and their gradients in the backward pass) serves gloo and
    nccl alike. It shares the wrapped layer's parameters and running buffers and updates them as the
    wrapped layer would on the global batch (unbiased variance for the running estimate).
    """

    def __init__(self, inner: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.inner = inner
        self.train(inner.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.inner
        if not self.training or not is_active():
            return bn(x)
        factor = 0.0 if bn.momentum is None else bn.momentum
        if bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                factor = 1.0 / float(bn.num_batches_tracked)
        all_reduce = _AllReduceWithGradient.apply
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        values = x.float()
        count = torch.tensor([float(x.numel() // max(1, x.shape[1]))], device=x.device)
        sums = all_reduce(torch.cat([values.sum(dims), count]))
        total = sums[-1].detach()
        if float(total) <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got {int(total)}")
        mean = sums[:-1] / total
        centred = values - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / total
        out = centred * torch.rsqrt(var + bn.eps).view(shape)
        if bn.affine:
            out = out * bn.weight.view(shape) + bn.bias.view(shape)
        if bn.track_running_stats and bn.running_mean is not None:
            with torch.no_grad():
                bn.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                bn.running_var.mul_(1 - factor).add_(var.detach() * (total / (total - 1)) * factor)
        return out.to(x.dtype)


class GlobalDropout(nn.Module):
    """Dropout whose mask is this rank's rows of the mask one process would draw for the global batch.

    Every rank draws the full mask from the same generator state (all ranks seed alike and draw alike),
    so the global random stream advances exactly as in one process. On the CPU the draw is the one
    ``F.dropout`` makes (bernoulli, then scaled); on CUDA the fused kernel's mask on the global shape.
    """

    def __init__(self, inner: nn.Dropout, rows: _Rows) -> None:
        super().__init__()
        self.p, self.inplace, self.rows = inner.p, inner.inplace, rows
        self.train(inner.training)
        self._warned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.rows
        if not self.training or self.p in (0.0, 1.0) or not is_active() or not rows.sizes:
            return F.dropout(x, self.p, self.training, self.inplace)
        if x.shape[0] != rows.local:
            if not self._warned:
                warnings.warn(
                    f"dropout on a tensor of {x.shape[0]} rows, not the batch's {rows.local}: its mask is "
                    "drawn per rank, so the ranks no longer follow the single-process trajectory exactly",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._warned = True
            return F.dropout(x, self.p, True, self.inplace)
        full = (rows.total, *x.shape[1:])
        part = slice(rows.start, rows.start + rows.local)
        if x.device.type == "cuda":
            _, keep = torch.native_dropout(torch.ones(full, dtype=x.dtype, device=x.device), self.p, True)
            noise = keep[part].to(x.dtype) * (1.0 / (1.0 - self.p))
        else:
            noise = torch.empty(full, dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
            noise = noise.div_(1 - self.p)[part]
        return x.mul_(noise) if self.inplace else x * noise


class _GatheredOutputs(nn.Module):
    """Calls the DDP-wrapped model on the local rows and returns its outputs for the global batch."""

    def __init__(self, ddp: nn.Module, rows: _Rows) -> None:
        super().__init__()
        self.ddp, self.rows = ddp, rows

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.ddp(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return gather_rows_with_gradient(out, self.rows.sizes)
        return type(out)(gather_rows_with_gradient(o, self.rows.sizes) for o in out)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class TrainingReplica:
    """One rank of a data-parallel training run that follows the single-process trajectory.

    Each rank holds its block of every global batch (``shard_slice`` of the batch, same draws of
    captions and augmentation as one process). Losses with batch-level terms (DSPH's proxy and pair
    terms, a mean over the batch) are not sums of per-rank losses, so ``loss`` gathers the model
    outputs of every rank (with gradient) and the labels, and each rank evaluates the loss of the whole
    global batch. The gather's backward sums the ranks' identical gradients (N times the gradient of the
    rank's own rows), and DistributedDataParallel's average over the N ranks divides that back: the
    parameter gradients are the single-process ones, so gradient clipping sees the same norm.
    BatchNorm layers use the global batch's statistics (``GlobalBatchNorm``) and dropout the global
    batch's mask (``GlobalDropout``) for the replica's lifetime; ``close`` puts the original layers back.
    The loss's own parameters (DSPH proxies) get identical gradients on every rank by construction;
    ``sync_loss_gradients`` copies rank 0's so their optimiser cannot drift by a rounding difference.
    """

    def __init__(self, model: nn.Module, loss: object = None) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.rows = _Rows(rank=rank())
        self.position = (rank(), world_size())
        self._swapped: list[tuple[nn.Module, str, nn.Module]] = []
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) in _BATCH_NORMS:
                    replacement: nn.Module = GlobalBatchNorm(child)
                elif type(child) is nn.Dropout:
                    replacement = GlobalDropout(child, self.rows)
                else:
                    continue
                setattr(parent, name, replacement)
                self._swapped.append((parent, name, child))
        self.model = model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else torch.cuda.current_device()]
        # Buffers (BatchNorm running statistics) are updated identically on every rank from the global
        # statistics, so DDP need not broadcast them before each forward (the flag's name changed).
        newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
        self.ddp = DistributedDataParallel(model, device_ids=ids, **no_sync)
        self.outputs = _GatheredOutputs(self.ddp, self.rows)
        params = loss.parameters() if isinstance(loss, nn.Module) else ()
        self.loss_params = [p for p in params if p.requires_grad]
        broadcast_([p.data for p in self.loss_params])

    def loss(self, loss_fn: Callable[..., torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``loss_fn`` of the global batch: the model's outputs and the labels of every rank."""
        self.rows.sizes = _gather_sizes(int(batch["labels"].shape[0]))
        labels = gather_rows(batch["labels"], self.rows.sizes)
        return loss_fn(self.outputs, {**batch, "labels": labels})

    def sync_loss_gradients(self) -> None:
        broadcast_([p.grad for p in self.loss_params if p.grad is not None])

    def close(self) -> None:
        """Put the original BatchNorm and dropout layers back and release DDP's hooks."""
        for parent, name, child in reversed(self._swapped):
            setattr(parent, name, child)
        self._swapped.clear()
        del self.outputs, self.ddp


def per_rank_batch_size(batch_size: int) -> int:
    """The largest per-rank share of a global batch (ranks differ by at most one row)."""
    return -(-batch_size // world_size())
