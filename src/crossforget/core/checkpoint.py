"""Checkpoints: a folder with ``weights.safetensors`` and ``config.json``; never pickle.

Weights are stored under prefixes: ``model.`` (what the unlearning methods change), ``loss.`` (the DSPH
proxies, needed for the Fisher of L_hash), ``prototypes.`` (Eq. 2, computed after training) and
optionally ``fisher.`` (the full-data Fisher, stored on request for SSD).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import (
    CHECKPOINT_CONFIG,
    CHECKPOINT_WEIGHTS,
    atomic_write_bytes,
    atomic_write_json,
    may_write,
)

FORMAT = "crossforget-checkpoint/1"
WEIGHTS, CONFIG = CHECKPOINT_WEIGHTS, CHECKPOINT_CONFIG


@dataclass
class Checkpoint:
    """Everything one trained (or unlearned) model needs to be used, evaluated and unlearned again."""

    config: dict
    model_state: dict[str, torch.Tensor]
    loss_state: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def tensors(self) -> dict[str, torch.Tensor]:
        flat = {f"model.{k}": v for k, v in self.model_state.items()}
        flat.update({f"loss.{k}": v for k, v in self.loss_state.items()})
        for group, values in self.extras.items():
            flat.update({f"{group}.{k}": v for k, v in values.items()})
        return {k: v.detach().contiguous().cpu() for k, v in flat.items()}


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """Tensors holding NaN or Inf, with the count of such values.

    Prototype rows are NaN by design for classes without training samples (Eq. 2 is 0/0 there), so a
    prototype row counts only when it is partly NaN or holds an Inf.
    """
    bad = {}
    for name, value in tensors.items():
        if not value.is_floating_point():
            continue
        finite = torch.isfinite(value)
        if name.startswith("prototypes.") and value.dim() == 2:
            empty_rows = torch.isnan(value).all(dim=1, keepdim=True)
            finite = finite | empty_rows
        if not bool(finite.all()):
            bad[name] = int((~finite).sum())
    return bad


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write weights then config, each atomically; the config lists every tensor for verification.

    A model with NaN or Inf weights is refused before anything is written: it would only give
    meaningless codes, and later runs would take it for a trained model.
    """
    path = Path(path)
    tensors = checkpoint.tensors()
    bad = non_finite_tensors(tensors)
    if bad:
        first = next(iter(bad))
        raise CrossforgetError(
            f"the new model has {sum(bad.values())} NaN/Inf values in {len(bad)} tensor(s) "
            f"(first: {first}); nothing was saved. The run diverged: use a smaller learning rate or "
            "milder method options"
        )
    if not may_write(path):  # under torchrun: rank 0 alone writes (see crossforget.core.io.may_write)
        return path
    path.mkdir(parents=True, exist_ok=True)
    config = dict(
        checkpoint.config, format=FORMAT, tensors={k: list(v.shape) for k, v in sorted(tensors.items())}
    )
    atomic_write_bytes(path / WEIGHTS, save(tensors))
    atomic_write_json(path / CONFIG, config)
    return path


def read_config(config_file: Path) -> dict:
    """A checkpoint's config.json as a dict; anything else (not UTF-8, not JSON, absurdly nested, not
    an object) is a one-line error that names the file."""
    try:
        config = json.loads(config_file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CrossforgetError(f"cannot read {config_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CrossforgetError(f"{config_file} is not UTF-8 text; the checkpoint is corrupt") from None
    except json.JSONDecodeError as exc:
        raise CrossforgetError(
            f"{config_file} is not valid JSON ({exc.msg}); the checkpoint is corrupt"
        ) from None
    except RecursionError:
        raise CrossforgetError(f"{config_file} is nested too deeply to be a checkpoint config") from None
    if not isinstance(config, dict):
        raise CrossforgetError(
            f"{config_file} holds a JSON {type(config).__name__}, not an object; the checkpoint is corrupt"
        )
    return config


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify that the config and the weights agree; errors name the offending file."""
    path = Path(path)
    config_file, weights_file = path / CONFIG, path / WEIGHTS
    for f in (config_file, weights_file):
        if not f.is_file():
            raise CrossforgetError(
                f"{f} is missing; is {path} a crossforget checkpoint folder (from `train`)?"
            )
    config = read_config(config_file)
    if config.get("format") != FORMAT:
        raise CrossforgetError(f"{config_file} has format {config.get('format')!r}, expected {FORMAT!r}")
    try:
        tensors = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CrossforgetError(f"{weights_file} cannot be read ({exc}); the checkpoint is corrupt") from exc
    expected = config.get("tensors", {})
    if not isinstance(expected, dict):
        raise CrossforgetError(f"{config_file}: 'tensors' must map names to shapes; re-create the checkpoint")
    actual = {k: list(v.shape) for k, v in tensors.items()}
    if expected != actual:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
        raise CrossforgetError(
            f"{weights_file} does not match {config_file}: missing {missing[:3]}, unexpected {extra[:3]}, "
            f"shape differs {changed[:3]}; re-create the checkpoint"
        )
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        group, _, name = key.partition(".")
        groups.setdefault(group, {})[name] = value
    model_state = groups.pop("model", {})
    loss_state = groups.pop("loss", {})
    return Checkpoint(config=config, model_state=model_state, loss_state=loss_state, extras=groups)
