"""Save and load hashing checkpoints (model + DSPH proxies + prototypes + optional Fisher)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from crossforget.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.data.registry import DatasetSpec
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.hashing import CrossModalHasher
from crossforget.models.inputs import Inputs


@dataclass
class HashingCheckpoint:
    """A loaded hashing checkpoint, ready to evaluate or to unlearn from."""

    model: CrossModalHasher
    loss: DSPHLoss
    preprocessor: Inputs
    config: dict
    prototypes: dict[str, torch.Tensor] = field(default_factory=dict)
    fisher: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def dataset_spec(self) -> DatasetSpec:
        return DatasetSpec.from_dict(self.config["dataset"])

    @property
    def bits(self) -> int:
        return int(self.config["model"]["bits"])

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])


def save_hashing_checkpoint(path: str | Path, saved: HashingCheckpoint) -> Path:
    extras = {}
    if saved.prototypes:
        extras["prototypes"] = saved.prototypes
    if saved.fisher:
        extras["fisher"] = saved.fisher
    loss_config = {"margin": saved.loss.margin, "alpha_reg": saved.loss.alpha_reg}
    config = dict(saved.config, kind="hashing", loss=loss_config)
    state = {k: v for k, v in saved.model.state_dict().items()}
    return save_checkpoint(path, Checkpoint(config, state, dict(saved.loss.state_dict()), extras))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_hashing_config(config: dict, proxies: torch.Tensor | None) -> str | None:
    """What is wrong with a hashing checkpoint config (None when nothing): the one schema check on load.

    ``proxies``: the stored DSPH proxies, whose rows must match the class list.
    """
    sections = {"model": dict, "loss": dict, "dataset": dict, "class_names": list, "training": dict}
    for key, kind in sections.items():
        if not isinstance(config.get(key), kind):
            return f"{key!r} must be a JSON {'object' if kind is dict else 'list'}"
    model, loss, dataset, names = config["model"], config["loss"], config["dataset"], config["class_names"]
    if not _is_int(model.get("bits")) or model["bits"] < 1:
        return f"model.bits must be a positive integer, not {model.get('bits')!r}"
    if not all(_is_number(loss.get(k)) for k in ("margin", "alpha_reg")):
        return "loss needs finite numbers margin and alpha_reg"
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        return "class_names must be a non-empty list of distinct names"
    if proxies is None or proxies.dim() != 2 or proxies.shape[0] != len(names):
        rows = "no proxies" if proxies is None else f"proxies of shape {tuple(proxies.shape)}"
        return f"{len(names)} class names but {rows} in the weights"
    spec_fields = {f.name: f for f in dataclasses.fields(DatasetSpec)}
    if set(dataset) - set(spec_fields) or not isinstance(dataset.get("name"), str):
        return f"dataset must be an object with a name and only {sorted(spec_fields)}"
    if not isinstance(dataset.get("options", {}), dict):
        return "dataset.options must be an object"
    if not all(_is_int(dataset.get(k, 0)) for k in ("num_query", "num_train", "split_seed")):
        return "dataset.num_query, num_train and split_seed must be integers"
    if not isinstance(config["training"].get("recipe"), dict):
        return "training.recipe must be an object"
    return None


def load_hashing_checkpoint(path: str | Path, device: torch.device | None = None) -> HashingCheckpoint:
    """Rebuild the model from the config alone (no download), load its weights, place it on ``device``."""
    raw = load_checkpoint(path)
    config_file = Path(path) / "config.json"
    if raw.config.get("kind") != "hashing":
        raise CrossforgetError(f"{path} holds a {raw.config.get('kind')!r} checkpoint, not a hashing model")
    problem = check_hashing_config(raw.config, raw.loss_state.get("proxies"))
    if problem is not None:
        raise CrossforgetError(f"{config_file} is not a valid hashing checkpoint config: {problem}")
    try:
        model, preprocessor = build_hasher(raw.config["model"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CrossforgetError(
            f"{config_file}: the model section cannot build a model ({type(exc).__name__}: {exc}); "
            "re-create the checkpoint"
        ) from None
    try:
        model.load_state_dict(raw.model_state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CrossforgetError(
            f"{Path(path) / 'weights.safetensors'} does not fit its config: {first}"
        ) from None
    loss = DSPHLoss(
        len(raw.config["class_names"]),
        model.bits,
        margin=raw.config["loss"]["margin"],
        alpha_reg=raw.config["loss"]["alpha_reg"],
    )
    try:
        loss.load_state_dict(raw.loss_state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CrossforgetError(
            f"{Path(path) / 'weights.safetensors'}: the loss state does not fit: {first}"
        ) from None
    if device is not None:
        model.to(device)
        loss.to(device)
    model.eval()
    return HashingCheckpoint(
        model, loss, preprocessor, raw.config, raw.extras.get("prototypes", {}), raw.extras.get("fisher", {})
    )
