"""Diagonal empirical Fisher information (paper Eq. 4), with the two estimators PPP and SSD need.

``batch`` is what the SSD reference code computes: the squared gradient of each mini-batch's *mean*
loss, averaged over batches (so it depends on the batch size). ``per_sample`` is Eq. 4 as written:
the mean over samples of the squared per-sample gradient.

The exact per-sample value is cheap for ``nn.Linear`` layers fed a 2-D ``(B, in)`` input: with x_i the
layer input and g_i the gradient of sample i's loss w.r.t. the layer output,
``sum_i (g_i x_i^T)^2 = (g^2)^T (x^2)`` and ``sum_i g_i^2`` for the bias, so one forward of the
per-sample losses and one backward of their sum suffice (every loss entry depends on its own sample
only, hence the gradient of the sum w.r.t. output row i is g_i; row i of a (B, in) input is taken to
come from sample i). Every other parameter (convolutions, norms, embeddings, Linear layers on 3-D inputs,
called more than once, sharing a parameter, or whose weight the autograd graph shows used elsewhere)
goes through ``torch.func``: ``vmap(grad(...))`` over samples, each sample given to the loss as a batch
of one. The choice is made per layer and per batch, so it is always exact.

The model is put in eval mode while estimating: BatchNorm then uses its running statistics, so the
per-sample losses are independent of each other (in train mode they are coupled through the batch
statistics, and neither the hook identity nor "loss of a batch holding sample i alone" would hold).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from crossforget.errors import CrossforgetError
from crossforget.losses.base import Batch, ModelLoss

Estimator = Literal["batch", "per_sample", "per_sample_vmap"]
ESTIMATORS: tuple[str, ...] = ("batch", "per_sample", "per_sample_vmap")

# Upper bound on per-sample gradient entries materialised at once by the generic path
# (2**26 float32 values = 256 MiB); larger batches are split into sample chunks.
_VMAP_ELEMENT_BUDGET = 2**26

log = logging.getLogger(__name__)


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
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of ``loss_fn`` over ``loader``, keyed by ``model.named_parameters()``.

    ``parameters``: names to estimate (default: every parameter with ``requires_grad``). Each result is
    float32, shaped and placed like its parameter. ``per_sample_vmap`` forces the generic torch.func path
    for every parameter (a reference for ``per_sample``; same values, slower). ``progress``: description
    for a transient rich progress bar, drawn only when stderr is a terminal.

    The model's parameters, ``.grad``, ``requires_grad`` flags and per-module training modes are the same
    after the call as before.
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
    if batches == 0:
        raise CrossforgetError("the data loader is empty; the Fisher needs at least one batch")
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
    tracer = _LinearTracer(model, selected) if hooks else None
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
    if samples == 0:
        raise CrossforgetError("the data loader is empty; the Fisher needs at least one batch")
    return sums, samples


@dataclass
class _Call:
    """What one forward recorded about a Linear layer (hook handles kept for removal)."""

    calls: int = 0
    inputs: torch.Tensor | None = None
    out_grad: torch.Tensor | None = None
    handles: list[torch.utils.hooks.RemovableHandle] = field(default_factory=list)


class _LinearTracer:
    """Forward hooks on the Linear layers eligible for the ``(g^2)^T (x^2)`` identity."""

    def __init__(self, model: nn.Module, selected: dict[str, nn.Parameter]) -> None:
        self.model = model
        owners: dict[int, int] = {}
        for module in model.modules():
            for param in module.parameters(recurse=False):
                owners[id(param)] = owners.get(id(param), 0) + 1
        name_of = {id(param): name for name, param in selected.items()}
        # module -> {"weight"/"bias": Fisher name} for the module's selected, unshared parameters
        self.candidates: dict[nn.Linear, dict[str, str]] = {}
        for module in model.modules():
            if type(module) is not nn.Linear:
                continue
            own = {
                role: name_of[id(param)]
                for role, param in (("weight", module.weight), ("bias", module.bias))
                if param is not None and id(param) in name_of
            }
            shared = any(owners[id(p)] > 1 for p in module.parameters(recurse=False))
            if own and not shared:
                self.candidates[module] = own
        self.state: dict[nn.Linear, _Call] = {module: _Call() for module in self.candidates}

    def _record(self, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        call = self.state[module]
        call.calls += 1
        if call.calls == 1 and args[0].dim() == 2 and output.requires_grad:
            call.inputs = args[0].detach()

            def keep(g: torch.Tensor, call: _Call = call) -> None:
                call.out_grad = g.detach()

            call.handles.append(output.register_hook(keep))

    def accumulate(
        self, loss_fn: ModelLoss, batch: Batch, size: int, sums: dict[str, torch.Tensor]
    ) -> set[str]:
        """Add the exact per-sample squared gradients of the eligible layers; return the names done."""
        for call in self.state.values():
            call.calls, call.inputs, call.out_grad = 0, None, None
        # Hooks live only for this forward/backward, so the torch.func pass never triggers them.
        forward_hooks = [module.register_forward_hook(self._record) for module in self.candidates]
        eligible: list[nn.Linear] = []
        try:
            losses = _per_sample_losses(loss_fn, self.model, batch, size)
            eligible = self._eligible(losses, size)
            if eligible and losses.requires_grad:
                targets = [getattr(m, role) for m in eligible for role in self.candidates[m]]
                torch.autograd.grad(losses.sum(), targets, allow_unused=True)
        finally:
            for handle in forward_hooks:
                handle.remove()
            for call in self.state.values():
                for handle in call.handles:
                    handle.remove()
                call.handles.clear()
        done: set[str] = set()
        for module in eligible:
            call = self.state[module]
            roles = self.candidates[module]
            done.update(roles.values())
            if call.out_grad is None:
                continue  # the layer does not reach the loss: its per-sample gradients are zero
            g2 = call.out_grad.float().square()
            if "weight" in roles:
                sums[roles["weight"]] += g2.T @ call.inputs.float().square()
            if "bias" in roles:
                sums[roles["bias"]] += g2.sum(dim=0)
        return done

    def _eligible(self, losses: torch.Tensor, size: int) -> list[nn.Linear]:
        """Layers called once on a (B, in) input whose parameters feed no other operation."""
        consumers = _leaf_consumers(losses)
        eligible = []
        for module, call in self.state.items():
            once = call.calls == 1 and call.inputs is not None and call.inputs.shape[0] == size
            # An uncalled layer whose parameters nothing consumes has zero gradients: also exact.
            uses = min(call.calls, 1)
            params = [getattr(module, role) for role in self.candidates[module]]
            if (once or call.calls == 0) and all(consumers.get(id(p), 0) <= uses for p in params):
                eligible.append(module)
            else:
                log.debug("Fisher: %s uses the generic per-sample path", self.candidates[module])
        return eligible


def _leaf_consumers(root: torch.Tensor) -> dict[int, int]:
    """How many autograd nodes consume each leaf tensor in the graph of ``root``.

    A Linear weight used by its layer once has exactly one consumer; any further use (a functional call
    with ``layer.weight``, a second call) adds one, which the hook identity would miss.
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
    chunk = max(1, min(size, _VMAP_ELEMENT_BUDGET // max(numel, 1)))
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
