"""Diagonal empirical Fisher information (paper Eq. 4), with the two estimators PPP and SSD need.

``batch`` is what the SSD reference code computes: the squared gradient of each mini-batch's *mean*
loss, averaged over batches (so it depends on the batch size). ``per_sample`` is Eq. 4 as written:
the mean over samples of the squared per-sample gradient.

``per_sample`` runs one forward of the per-sample losses and one backward of their sum, taken with
respect to the layer outputs only (every loss entry depends on its own sample only, so the gradient of
the sum w.r.t. sample i's slice of an output is sample i's gradient g_i). Forward hooks keep each
layer's input x; per-sample parameter gradients then have closed forms, squared and summed over samples:

- ``nn.Linear``: on (B, in) inputs ``sum_i (g_i x_i^T)^2 = (g^2)^T (x^2)``; on (B, ..., in) inputs
  sample i's gradient is ``sum_t g_it x_it^T``; bias ``sum_t g_it``.
- ``nn.Conv2d`` (zero padding, any stride/dilation, groups=1): ``g_i (out, L) @ columns_i (L, in*kh*kw)``
  with the input patches of the L output positions; bias ``sum_L g_i``.
- ``nn.BatchNorm1d/2d`` with running statistics (eval mode): weight ``sum g_i * x_hat_i``, bias
  ``sum g_i`` over all but the channel dim, x_hat normalised by the running mean and variance.
- ``nn.LayerNorm``: the same sums over every row of the sample, x_hat normalised per row.
- ``nn.Embedding`` (no max_norm, no scale_grad_by_freq): row v of sample i's gradient is the sum of
  g over i's tokens equal to v (none for padding_idx), formed per (sample, token) pair, never as a
  dense (B, V, D) tensor.

Products that must be materialised (convolutions, Linear on sequences) are formed sample by sample,
the convolution patches in chunks of bounded memory. Dim 0 of a layer's input is taken to be the
sample index, as in any batch-first model (each slice along it belongs to one sample).

Everything else goes through ``torch.func``: ``vmap(grad(...))`` over samples, each sample given to
the loss as a batch of one. That covers parameters outside these layers (e.g. CLIP's class token),
other layer types and subclasses, and a layer called more than once, sharing a parameter, whose
parameter the autograd graph shows used elsewhere, whose input is not batched (CLIP's position
embeddings, shared by every sample) or was changed in place afterwards (autograd, and so torch.func,
then refuses the loss with an error). The choice is made per layer and per batch, so ``per_sample``
is always exact; ``per_sample_vmap`` forces torch.func everywhere.

The model is put in eval mode while estimating: BatchNorm then uses its running statistics, so the
per-sample losses are independent of each other (in train mode they are coupled through the batch
statistics, and neither the hook identity nor "loss of a batch holding sample i alone" would hold).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.func import functional_call, grad, vmap

from crossforget.core import distributed
from crossforget.core.errors import CrossforgetError
from crossforget.losses.base import Batch, ModelLoss

Estimator = Literal["batch", "per_sample", "per_sample_vmap"]
ESTIMATORS: tuple[str, ...] = ("batch", "per_sample", "per_sample_vmap")

# Upper bound on per-sample gradient entries materialised at once (2**26 float32 values = 256 MiB), by
# the closed forms and by the generic path; larger batches are split into sample chunks.
_ELEMENT_BUDGET = 2**26

log = logging.getLogger(__name__)
GENERIC_PATH_NOTE = "generic per-sample path"

Sums = dict[str, torch.Tensor]  # Fisher name -> running sum of squared per-sample gradients
Roles = dict[str, str]  # a layer's "weight"/"bias" -> its Fisher name


class FallbackCounter(logging.Handler):
    """Counts the layers that left the closed forms for the generic torch.func path (diagnostics)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if GENERIC_PATH_NOTE in record.getMessage():
            self.count += 1


@contextmanager
def counting_fallbacks() -> Iterator[FallbackCounter]:
    """While open, count every per-sample pass that sent a layer to the generic path."""
    counter, level = FallbackCounter(), log.level
    log.addHandler(counter)
    log.setLevel(logging.DEBUG)
    try:
        yield counter
    finally:
        log.removeHandler(counter)
        log.setLevel(level)


def batch_size(batch: Batch) -> int:
    """Number of samples in a batch: ``len(batch["labels"])`` when present, else of the first tensor."""
    if not batch:
        raise CrossforgetError("got an empty batch dict; the loader must yield dicts of batched tensors")
    first = batch["labels"] if "labels" in batch else next(iter(batch.values()))
    return int(first.shape[0])


def diagonal_fisher(
    model: nn.Module,
    loss_fn: ModelLoss,
    loader: Iterable[Batch],
    estimator: Estimator = "batch",
    parameters: Sequence[str] | None = None,
    progress: str | None = None,
    sharded: bool = False,
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of ``loss_fn`` over ``loader``, keyed by ``model.named_parameters()``.

    ``parameters``: names to estimate (default: every parameter with ``requires_grad``). Each result is
    float32, shaped and placed like its parameter. ``per_sample_vmap`` forces the generic torch.func path
    for every parameter (a reference for ``per_sample``; same values, slower). ``progress``: description
    for a transient rich progress bar, drawn only when stderr is a terminal.

    The model's parameters, ``.grad``, ``requires_grad`` flags and per-module training modes are the same
    after the call as before.

    ``sharded``: under torchrun, the loader yields this rank's share of the batches (whole mini-batches,
    see ``distributed.shard_batches``); the sums of squared gradients and the counts are summed over
    the ranks before dividing, so every rank gets the single-process value (a rank may have no batch).
    """
    if estimator not in ESTIMATORS:
        raise CrossforgetError(
            f"unknown Fisher estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
        )
    selected = _select_parameters(model, parameters)
    modes = {module: module.training for module in model.modules()}
    flags = {param: param.requires_grad for param in model.parameters()}
    try:
        model.eval()
        for param in flags:
            param.requires_grad_(False)
        for param in selected.values():
            param.requires_grad_(True)
        if estimator == "batch":
            sums, count = _batch_estimate(model, loss_fn, loader, selected, progress)
        else:
            sums, count = _per_sample_estimate(
                model, loss_fn, loader, selected, progress, hooks=estimator == "per_sample"
            )
    finally:
        for param, flag in flags.items():
            param.requires_grad_(flag)
        for module, mode in modes.items():
            module.train(mode)
    if sharded and distributed.is_active():
        totals = torch.tensor([float(count)], dtype=torch.float64)
        distributed.all_reduce_sum_([*sums.values(), totals])
        count = int(totals.item())
    if count == 0:
        raise CrossforgetError("the data loader is empty; the Fisher needs at least one batch")
    fisher = {name: total / count for name, total in sums.items()}
    check_fisher(fisher, "Fisher")
    return fisher


def check_fisher(fisher: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise if a Fisher tensor holds NaN/Inf or negative entries, naming the parameter."""
    for name, values in fisher.items():
        if not torch.isfinite(values).all():
            raise CrossforgetError(
                f"{what} of parameter {name!r} contains NaN or Inf; fix the numerical problem in the "
                "checkpoint or the loss (NaN weights, log(0), sqrt(0), overflow) before unlearning"
            )
        if (values < 0).any():
            raise CrossforgetError(
                f"{what} of parameter {name!r} has negative entries; pass squared gradients"
            )


def aligned_parameters(
    params: Mapping[str, torch.Tensor] | nn.Module, fishers: Mapping[str, Mapping[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """The parameters the Fisher dicts cover, after checking keys, shapes and values agree.

    ``fishers`` maps a display name (e.g. "forget Fisher") to a Fisher dict; all must hold the same
    keys, each naming a parameter of the same shape. Parameters without a Fisher entry are not returned
    (so frozen parts of a model stay untouched by the dampening rules).
    """
    named = dict(params.named_parameters()) if isinstance(params, nn.Module) else dict(params)
    (first, reference), *others = fishers.items()
    for what, fisher in others:
        for name in reference:
            if name not in fisher:
                raise CrossforgetError(
                    f"{what} has no entry for {name!r}; estimate all Fishers on one parameter set"
                )
        for name in fisher:
            if name not in reference:
                raise CrossforgetError(
                    f"{first} has no entry for {name!r}; estimate all Fishers on one parameter set"
                )
    chosen = {}
    for name in reference:
        if name not in named:
            raise CrossforgetError(f"the Fishers name parameter {name!r}, which the model does not have")
        chosen[name] = named[name]
        for what, fisher in fishers.items():
            if fisher[name].shape != named[name].shape:
                raise CrossforgetError(
                    f"{what} of {name!r} has shape {tuple(fisher[name].shape)}, the parameter "
                    f"{tuple(named[name].shape)}; recompute the Fisher for this model"
                )
    for what, fisher in fishers.items():
        check_fisher(fisher, what)
    return chosen


def _select_parameters(model: nn.Module, names: Sequence[str] | None) -> dict[str, nn.Parameter]:
    named = dict(model.named_parameters())
    if names is None:
        chosen = {name: param for name, param in named.items() if param.requires_grad}
    else:
        unknown = [name for name in names if name not in named]
        if unknown:
            raise CrossforgetError(
                f"unknown parameter name(s) {unknown[:5]}; use names from model.named_parameters(), "
                f"e.g. {list(named)[:3]}"
            )
        chosen = {name: named[name] for name in dict.fromkeys(names)}
    if not chosen:
        raise CrossforgetError("no parameters to estimate the Fisher for; unfreeze some or pass their names")
    for name, param in chosen.items():
        if not param.is_floating_point():
            raise CrossforgetError(f"parameter {name!r} is not floating point; leave it out of `parameters`")
    return chosen


def _zeros_like(selected: Mapping[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    return {name: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for name, p in selected.items()}


def _batches(loader: Iterable[Batch], description: str | None) -> Iterator[Batch]:
    """Iterate the loader, under a transient progress bar when asked for and stderr is a terminal."""
    if description is None or not sys.stderr.isatty():
        yield from loader
        return
    from rich.console import Console
    from rich.progress import Progress

    total = len(loader) if hasattr(loader, "__len__") else None
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for batch in loader:
            yield batch
            bar.advance(task)


def _batch_estimate(
    model: nn.Module,
    loss_fn: ModelLoss,
    loader: Iterable[Batch],
    selected: dict[str, nn.Parameter],
    progress: str | None,
) -> tuple[dict[str, torch.Tensor], int]:
    sums = _zeros_like(selected)
    names, params = list(selected), list(selected.values())
    batches = 0
    for batch in _batches(loader, progress):
        if batch_size(batch) == 0:
            raise CrossforgetError("the loader yielded an empty batch; drop empty batches before the Fisher")
        loss = loss_fn(model, batch, reduction="mean")
        if loss.dim() != 0:
            raise CrossforgetError(
                f"loss_fn(reduction='mean') returned shape {tuple(loss.shape)}; need a scalar"
            )
        batches += 1
        if not loss.requires_grad:
            continue  # no selected parameter influences the loss: every gradient is zero
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for name, g in zip(names, grads, strict=True):
            if g is not None:
                sums[name] += g.detach().float().square()
    return sums, batches


def _per_sample_estimate(
    model: nn.Module,
    loss_fn: ModelLoss,
    loader: Iterable[Batch],
    selected: dict[str, nn.Parameter],
    progress: str | None,
    hooks: bool,
) -> tuple[dict[str, torch.Tensor], int]:
    sums = _zeros_like(selected)
    tracer = _LayerTracer(model, selected) if hooks else None
    samples = 0
    for batch in _batches(loader, progress):
        size = batch_size(batch)
        if size == 0:
            raise CrossforgetError("the loader yielded an empty batch; drop empty batches before the Fisher")
        done: set[str] = set()
        if tracer is not None and tracer.candidates:
            done = tracer.accumulate(loss_fn, batch, size, sums)
        rest = [name for name in selected if name not in done]
        if rest:
            _vmap_accumulate(model, loss_fn, batch, size, {n: selected[n] for n in rest}, sums)
        samples += size
    return sums, samples


def _sample_chunks(size: int, per_sample: int) -> Iterator[slice]:
    """Sample ranges whose per-sample gradients hold at most about ``_ELEMENT_BUDGET`` entries."""
    step = max(1, min(size, _ELEMENT_BUDGET // max(per_sample, 1)))
    for start in range(0, size, step):
        yield slice(start, start + step)


def _work(tensor: torch.Tensor) -> torch.Tensor:
    """float64 stays float64; everything else is computed in float32 (half precision would lose digits)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def _add(sums: Sums, roles: Roles, role: str, value: torch.Tensor) -> None:
    if role in roles:
        sums[roles[role]] += value.float().reshape(sums[roles[role]].shape)


def _sum_squared_products(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``sum_i (left_i @ right_i)^2`` for (B, O, L) and (B, L, P), summed over samples in order.

    The products come from one batched multiply per chunk of samples (each chunk's (b, O, P) products
    bounded by ``_ELEMENT_BUDGET``): one call instead of one per sample, which matters when every
    call pays for waking the thread pool. Each sample's product is the one a single ``mm`` gives,
    and the squares are added sample by sample, so the sum is the same float for float.
    """
    total = torch.zeros(left.shape[1], right.shape[2], dtype=left.dtype, device=left.device)
    for part in _sample_chunks(left.shape[0], total.numel()):
        for product in torch.bmm(left[part], right[part]):
            total.addcmul_(product, product)
    return total


def _linear_fits(module: nn.Linear, x: torch.Tensor) -> bool:
    return x.dim() >= 2


def _linear_add(module: nn.Linear, x: torch.Tensor, g: torch.Tensor, roles: Roles, sums: Sums) -> None:
    size = x.shape[0]
    x, g = _work(x).reshape(size, -1, x.shape[-1]), _work(g).reshape(size, -1, g.shape[-1])
    if x.shape[1] == 1:  # one row per sample: sum_i (g_i x_i^T)^2 = (g^2)^T (x^2)
        x, g = x[:, 0], g[:, 0]
        _add(sums, roles, "weight", g.square().T @ x.square())
        _add(sums, roles, "bias", g.square().sum(dim=0))
        return
    if "weight" in roles:  # sample i's gradient: sum over its rows t of g_it x_it^T
        _add(sums, roles, "weight", _sum_squared_products(g.transpose(1, 2), x))
    _add(sums, roles, "bias", g.sum(dim=1).square().sum(dim=0))


def _conv_padding(module: nn.Conv2d) -> tuple[int, int] | None:
    """Zero padding per side (rows, columns), or None when the layer pads otherwise or groups channels."""
    if module.padding_mode != "zeros" or module.groups != 1:
        return None
    if module.padding == "valid":
        return (0, 0)
    if module.padding == "same":
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        return None if any(t % 2 for t in totals) else (totals[0] // 2, totals[1] // 2)
    return (module.padding[0], module.padding[1])


def _conv_fits(module: nn.Conv2d, x: torch.Tensor) -> bool:
    return x.dim() == 4 and _conv_padding(module) is not None


def _conv_columns(module: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The (B, L, P) input patch each of the L output positions sees, from strided views (one copy).

    P runs over (in, kh, kw) as the weight does, or over (kh, kw, in) for a channels-last input (then
    the copy reads contiguous channels; the second value says so).
    """
    (ph, pw), (dh, dw) = _conv_padding(module), module.dilation
    (kh, kw), (sh, sw) = module.kernel_size, module.stride
    padded = F.pad(x, (pw, pw, ph, ph))
    windows = padded.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
    size, positions = x.shape[0], windows.shape[2] * windows.shape[3]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return windows.permute(0, 2, 3, 4, 5, 1).reshape(size, positions, -1), True
    return windows.permute(0, 1, 4, 5, 2, 3).reshape(size, -1, positions).transpose(1, 2), False


def _conv_add(module: nn.Conv2d, x: torch.Tensor, g: torch.Tensor, roles: Roles, sums: Sums) -> None:
    size, out = g.shape[:2]
    g = _work(g).reshape(size, out, -1)  # (B, out, L)
    if "weight" in roles:  # sample i's gradient: g_i (out, L) @ columns_i (L, P)
        x, (kh, kw) = _work(x), module.kernel_size
        for part in _sample_chunks(size, module.weight[0].numel() * g.shape[-1]):
            columns, channels_last = _conv_columns(module, x[part])
            total = _sum_squared_products(g[part], columns)
            if channels_last:
                total = total.view(out, kh, kw, -1).permute(0, 3, 1, 2)
            _add(sums, roles, "weight", total)
    _add(sums, roles, "bias", g.sum(dim=2).square().sum(dim=0))


def _batch_norm_fits(module: nn.BatchNorm1d | nn.BatchNorm2d, x: torch.Tensor) -> bool:
    # Running statistics only: batch statistics would couple the samples.
    dims = (4,) if isinstance(module, nn.BatchNorm2d) else (2, 3)
    return not module.training and module.running_mean is not None and x.dim() in dims


def _batch_norm_add(
    module: nn.BatchNorm1d | nn.BatchNorm2d,
    x: torch.Tensor,
    g: torch.Tensor,
    roles: Roles,
    sums: Sums,
) -> None:
    """With x_hat = (x - mean) * scale per channel: sum g x_hat = scale * (sum g x - mean * sum g)."""
    x, g = _work(x), _work(g)
    spatial = tuple(range(2, x.dim()))  # summed in place, whatever the memory layout
    g_sum = g.sum(dim=spatial) if spatial else g  # (B, C): each sample's bias gradient
    if "weight" in roles:
        gx = (g * x).sum(dim=spatial) if spatial else g * x
        mean, var = _work(module.running_mean), _work(module.running_var)
        per_sample = torch.rsqrt(var + module.eps) * (gx - mean * g_sum)
        _add(sums, roles, "weight", per_sample.square().sum(dim=0))
    _add(sums, roles, "bias", g_sum.square().sum(dim=0))


def _layer_norm_fits(module: nn.LayerNorm, x: torch.Tensor) -> bool:
    return x.dim() > len(module.normalized_shape)


def _layer_norm_add(module: nn.LayerNorm, x: torch.Tensor, g: torch.Tensor, roles: Roles, sums: Sums) -> None:
    shape = (x.shape[0], -1, *module.normalized_shape)  # (B, rows, *normalized_shape)
    x, g = _work(x).reshape(shape), _work(g).reshape(shape)
    if "weight" in roles:
        var, mean = torch.var_mean(x, dim=tuple(range(2, x.dim())), correction=0, keepdim=True)
        x_hat = (x - mean) * torch.rsqrt(var + module.eps)
        _add(sums, roles, "weight", (g * x_hat).sum(dim=1).square().sum(dim=0))
    _add(sums, roles, "bias", g.sum(dim=1).square().sum(dim=0))


def _embedding_fits(module: nn.Embedding, x: torch.Tensor) -> bool:
    # max_norm renormalises rows in place; scale_grad_by_freq scales by counts over the whole batch.
    return x.dim() >= 1 and module.max_norm is None and not module.scale_grad_by_freq


def _embedding_add(module: nn.Embedding, x: torch.Tensor, g: torch.Tensor, roles: Roles, sums: Sums) -> None:
    """Row v of sample i's gradient is the sum of g over i's tokens equal to v; never (B, V, D) dense."""
    size, dim = x.shape[0], g.shape[-1]
    ids = x.reshape(size, -1)
    owners = torch.arange(size, device=ids.device).unsqueeze(1).expand_as(ids).reshape(-1)
    ids, g = ids.reshape(-1), _work(g).reshape(-1, dim)
    if module.padding_idx is not None:  # the padding row never receives a gradient
        keep = ids != module.padding_idx
        ids, owners, g = ids[keep], owners[keep], g[keep]
    keys, slot = torch.unique(owners * module.num_embeddings + ids, return_inverse=True)
    rows = torch.zeros(keys.numel(), dim, dtype=g.dtype, device=g.device).index_add_(0, slot, g)
    sums[roles["weight"]].index_add_(0, keys % module.num_embeddings, rows.square().float())


# Exact module type -> (does this call's input allow the closed form, add the call's squared gradients).
# Subclasses are left out on purpose: they may override forward.
_RULES: dict[type[nn.Module], tuple[Callable[..., bool], Callable[..., None]]] = {
    nn.Linear: (_linear_fits, _linear_add),
    nn.Conv2d: (_conv_fits, _conv_add),
    nn.BatchNorm1d: (_batch_norm_fits, _batch_norm_add),
    nn.BatchNorm2d: (_batch_norm_fits, _batch_norm_add),
    nn.LayerNorm: (_layer_norm_fits, _layer_norm_add),
    nn.Embedding: (_embedding_fits, _embedding_add),
}


@dataclass
class _Call:
    """What one forward recorded about a layer: its input and where its output's gradient arrives."""

    calls: int = 0
    inputs: torch.Tensor | None = None
    version: int = 0
    edge: GradientEdge | None = None


class _LayerTracer:
    """Forward hooks on the layers whose per-sample squared gradients have a closed form (``_RULES``)."""

    def __init__(self, model: nn.Module, selected: dict[str, nn.Parameter]) -> None:
        self.model = model
        self.size = 0
        owners: dict[int, int] = {}
        for module in model.modules():
            for param in module.parameters(recurse=False):
                owners[id(param)] = owners.get(id(param), 0) + 1
        name_of = {id(param): name for name, param in selected.items()}
        # module -> {"weight"/"bias": Fisher name} for the module's selected, unshared parameters
        self.candidates: dict[nn.Module, Roles] = {}
        for module in model.modules():
            if type(module) not in _RULES:
                continue
            own = {
                role: name_of[id(param)]
                for role, param in module.named_parameters(recurse=False)
                if id(param) in name_of
            }
            shared = any(owners[id(p)] > 1 for p in module.parameters(recurse=False))
            if own and not shared:
                self.candidates[module] = own
        self.state: dict[nn.Module, _Call] = {module: _Call() for module in self.candidates}

    def _record(self, module: nn.Module, args: tuple[object, ...], output: object) -> None:
        call = self.state[module]
        call.calls += 1
        if call.calls != 1 or not args or not isinstance(args[0], torch.Tensor):
            return
        x = args[0]
        fits = _RULES[type(module)][0]
        if (
            isinstance(output, torch.Tensor)
            and output.requires_grad
            and x.shape[:1] == (self.size,)
            and output.shape[:1] == (self.size,)
            and fits(module, x)
        ):
            # The edge, not the tensor: a later in-place op (ReLU(inplace=True)) rebinds the tensor's
            # grad_fn, while the edge keeps naming the gradient of what this layer returned.
            call.inputs, call.version, call.edge = x.detach(), x._version, get_gradient_edge(output)

    def accumulate(self, loss_fn: ModelLoss, batch: Batch, size: int, sums: Sums) -> set[str]:
        """Add the exact per-sample squared gradients of the eligible layers; return the names done."""
        for call in self.state.values():
            call.calls, call.inputs, call.edge = 0, None, None
        self.size = size
        # Hooks live only for this forward, so the torch.func pass never triggers them.
        handles = [module.register_forward_hook(self._record) for module in self.candidates]
        try:
            losses = _per_sample_losses(loss_fn, self.model, batch, size)
        finally:
            for handle in handles:
                handle.remove()
        eligible = self._eligible(losses)
        reached = [m for m in eligible if self.state[m].edge is not None]
        grads: Sequence[torch.Tensor | None] = [None] * len(reached)
        if reached and losses.requires_grad:
            # Gradients w.r.t. the layer outputs only: no parameter gradient is formed on the way.
            edges = [self.state[m].edge for m in reached]
            grads = torch.autograd.grad(losses.sum(), edges, allow_unused=True)
        done: set[str] = set()
        for module in eligible:
            done.update(self.candidates[module].values())
        with torch.no_grad():
            for module, g in zip(reached, grads, strict=True):
                if g is not None:  # None: the layer does not reach the loss, its gradients are zero
                    add = _RULES[type(module)][1]
                    add(module, self.state[module].inputs, g.detach(), self.candidates[module], sums)
        for call in self.state.values():
            call.inputs, call.edge = None, None
        return done

    def _eligible(self, losses: torch.Tensor) -> list[nn.Module]:
        """Layers called once on a per-sample input whose parameters feed no other operation."""
        consumers = _leaf_consumers(losses)
        eligible = []
        for module, call in self.state.items():
            once = (
                call.calls == 1
                and call.inputs is not None
                and call.inputs._version == call.version  # not overwritten in place since
            )
            # An uncalled layer whose parameters nothing consumes has zero gradients: also exact.
            uses = min(call.calls, 1)
            params = [getattr(module, role) for role in self.candidates[module]]
            if (once or call.calls == 0) and all(consumers.get(id(p), 0) <= uses for p in params):
                eligible.append(module)
            else:
                log.debug("Fisher: %s uses the " + GENERIC_PATH_NOTE, self.candidates[module])
        return eligible


def _leaf_consumers(root: torch.Tensor) -> dict[int, int]:
    """How many autograd nodes consume each leaf tensor in the graph of ``root``.

    A layer's weight used by the layer once has exactly one consumer; any further use (a functional call
    with ``layer.weight``, a second call) adds one, which the closed forms would miss.
    """
    counts: dict[int, int] = {}
    if root.grad_fn is None:
        return counts
    seen = {root.grad_fn}
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            leaf = getattr(child, "variable", None)
            if leaf is not None:
                counts[id(leaf)] = counts.get(id(leaf), 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return counts


def _per_sample_losses(loss_fn: ModelLoss, model: nn.Module, batch: Batch, size: int) -> torch.Tensor:
    losses = loss_fn(model, batch, reduction="none")
    if tuple(losses.shape) != (size,):
        raise CrossforgetError(
            f"loss_fn(reduction='none') returned shape {tuple(losses.shape)} for a batch of {size}; "
            "it must return one loss per sample"
        )
    return losses


class _LossModule(nn.Module):
    """Wraps model + loss so torch.func.functional_call can swap the parameters the loss sees."""

    def __init__(self, model: nn.Module, loss_fn: ModelLoss) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch, reduction="none")


def _vmap_accumulate(
    model: nn.Module,
    loss_fn: ModelLoss,
    batch: Batch,
    size: int,
    params: dict[str, nn.Parameter],
    sums: dict[str, torch.Tensor],
) -> None:
    """Exact per-sample squared gradients through torch.func, in sample chunks of bounded memory."""
    for key, value in batch.items():
        if value.shape[:1] != (size,):
            raise CrossforgetError(
                f"batch entry {key!r} has shape {tuple(value.shape)}, not {size} samples first; per-sample "
                "Fisher needs every batch tensor batched along dim 0 (or use estimator='batch')"
            )
    wrapper = _LossModule(model, loss_fn)
    detached = {f"model.{name}": p.detach() for name, p in params.items()}

    def sample_loss(values: dict[str, torch.Tensor], sample: Batch) -> torch.Tensor:
        one = {key: value.unsqueeze(0) for key, value in sample.items()}
        return functional_call(wrapper, values, (one,)).sum()

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0))
    numel = sum(p.numel() for p in params.values())
    chunk = max(1, min(size, _ELEMENT_BUDGET // max(numel, 1)))
    with torch.no_grad():
        for start in range(0, size, chunk):
            part = {key: value[start : start + chunk] for key, value in batch.items()}
            try:
                grads = per_sample_grad(detached, part)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CrossforgetError(
                    f"per-sample Fisher: torch.func could not vmap the loss ({first}); make the loss "
                    "vmap-compatible (no .item() or data-dependent branches) or use estimator='batch'"
                ) from exc
            for key, g in grads.items():
                sums[key.removeprefix("model.")] += g.float().square().sum(dim=0)
