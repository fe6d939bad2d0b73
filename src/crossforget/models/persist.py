"""Save and load hashing checkpoints (model + DSPH proxies + prototypes + optional Fisher)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from crossforget.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crossforget.data.registry import DatasetSpec
from crossforget.errors import CrossforgetError
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


def load_hashing_checkpoint(path: str | Path, device: torch.device | None = None) -> HashingCheckpoint:
    """Rebuild the model from the config alone (no download), load its weights, place it on ``device``."""
    raw = load_checkpoint(path)
    if raw.config.get("kind") != "hashing":
        raise CrossforgetError(f"{path} holds a {raw.config.get('kind')!r} checkpoint, not a hashing model")
    model, preprocessor = build_hasher(raw.config["model"])
    try:
        model.load_state_dict(raw.model_state, strict=True)
    except RuntimeError as exc:
        raise CrossforgetError(
            f"{Path(path) / 'weights.safetensors'} does not fit its config: {exc}"
        ) from exc
    loss = DSPHLoss(
        len(raw.config["class_names"]),
        model.bits,
        margin=raw.config["loss"]["margin"],
        alpha_reg=raw.config["loss"]["alpha_reg"],
    )
    loss.load_state_dict(raw.loss_state)
    if device is not None:
        model.to(device)
        loss.to(device)
    model.eval()
    return HashingCheckpoint(
        model, loss, preprocessor, raw.config, raw.extras.get("prototypes", {}), raw.extras.get("fisher", {})
    )
