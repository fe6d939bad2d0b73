"""Train the Original model (or a Retrain reference with ``exclude``) and write its checkpoint."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from crossforget.core import distributed
from crossforget.core.device import module_device
from crossforget.core.reproducibility import environment_stamp, seed_everything
from crossforget.data.container import FileImages, MultiModalData
from crossforget.data.fingerprint import FINGERPRINT_KEY, check_data, data_fingerprint
from crossforget.data.forget import ForgetRequest, carries_any
from crossforget.data.registry import DatasetSpec, load_dataset
from crossforget.data.splits import RetrievalSplit
from crossforget.engine.training import TrainingRecipe, train_model
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.hashing import CrossModalHasher
from crossforget.models.inputs import BatchSource, Inputs, open_store, store_matches
from crossforget.models.options import check_model_options
from crossforget.models.tokenizer import WordTokenizer
from crossforget.tasks.hashing.checkpoint import HashingCheckpoint
from crossforget.tasks.hashing.evaluation import encode
from crossforget.unlearning.prototypes import class_prototypes

DEFAULT_IMAGE_SIZE = 48  # the small backbone's input size for data without a native size
DEFAULT_MODEL = {"backbone": "small", "cnn_width": 32, "feature_dim": 256, "embed_dim": 128, "dropout": 0.2}


@dataclass
class LoadedData:
    """A dataset, its split and a batch store built for one preprocessor.

    ``device``: where models and batches go (None: the CPU); ``num_workers``: threads decoding images
    ahead of use; ``memory_budget``: bytes of decoded images kept in memory.
    """

    spec: DatasetSpec
    data: MultiModalData
    split: RetrievalSplit
    store: BatchSource | None = None
    device: torch.device | None = None
    num_workers: int = 0
    memory_budget: int = 4 << 30
    _fingerprint: dict | None = field(default=None, repr=False)

    def fingerprint(self) -> dict:
        """The data's fingerprint (computed once), recorded in every checkpoint trained on it."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.data)
        return self._fingerprint

    def check(self, config: Mapping, where: object) -> None:
        """Refuse this data for a checkpoint (``config``) trained on other data; ``where`` names it."""
        check_data(config, self.data, str(where), self.fingerprint())

    def store_for(self, inputs: Inputs, device: torch.device | None = None) -> BatchSource:
        """The store for ``inputs`` (reused while they do not change), placing batches on ``device``."""
        if not store_matches(self.store, inputs):
            self.store = open_store(self.data, inputs, self.device, self.num_workers, self.memory_budget)
        self.store.device = device if device is not None else self.device
        return self.store


def training_indices(data: MultiModalData, split: RetrievalSplit, exclude: Sequence[str]) -> np.ndarray:
    """The train split, minus every sample carrying an excluded class (the Retrain reference)."""
    if not exclude:
        return split.train
    classes = ForgetRequest(exclude).indices(data.class_names)
    return split.train[~carries_any(data.labels[split.train], classes)]


def model_config(
    data: MultiModalData, split: RetrievalSplit, bits: int, options: dict, spec: DatasetSpec | None = None
) -> dict:
    """The model config; CLIP reads its architecture and tokenizer from the local pretrained model, the
    clip-features backbone its dimension from the features file (checked against ``spec``)."""
    check_model_options(options)
    backbone = options.get("backbone", "small")
    if backbone == "clip":
        from crossforget.models.clip import clip_model_config

        return {**clip_model_config(options), "bits": bits}
    if backbone == "clip-features":
        from crossforget.models.features import features_model_config

        dataset = {"name": spec.name, "options": spec.options} if spec is not None else {}
        return {**features_model_config(options, dataset), "bits": bits}
    config = {**DEFAULT_MODEL, **options, "bits": bits}
    if config["backbone"] == "small":
        config.setdefault("image_size", native_image_size(data) or DEFAULT_IMAGE_SIZE)
        captions = [c for i in split.train for c in data.captions[int(i)]]
        config["tokenizer"] = WordTokenizer.build(captions).to_config()
    return config


def native_image_size(data: MultiModalData) -> int | None:
    """The size the built-in scenes were drawn at: the small model's input size unless one is given,
    so ``--data-option image_size=32`` trains at 32 pixels instead of upscaling to 48."""
    params = data.info.get("params") if data.name == "scenes" else None
    size = params.get("image_size") if isinstance(params, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def grey_images(data: MultiModalData) -> list[str]:
    """Image files that failed to decode (truncated, ...) and were replaced by grey so far."""
    return data.images.replaced() if isinstance(data.images, FileImages) else []


def initial_model(config: dict) -> tuple[CrossModalHasher, Inputs]:
    """A model to train from: random heads and, for the clip backbone, the pretrained CLIP weights."""
    model, inputs = build_hasher(config)
    if config.get("backbone") == "clip":
        from crossforget.models.clip import load_pretrained_clip

        load_pretrained_clip(model.image_encoder, model.text_encoder, config["clip_model"])
    return model, inputs


def compute_prototypes(
    model: torch.nn.Module, store: BatchSource, indices: np.ndarray
) -> dict[str, torch.Tensor]:
    """Eq. 2 prototypes of each modality from the trained model, stored with the checkpoint."""
    codes = encode(model, store, indices)
    labels = store.labels[torch.as_tensor(indices)]
    return {"image": class_prototypes(codes.image, labels), "text": class_prototypes(codes.text, labels)}


def train_hashing(
    loaded: LoadedData,
    bits: int,
    recipe: TrainingRecipe,
    seed: int,
    exclude: Sequence[str] = (),
    model_options: dict | None = None,
    show_progress: bool = True,
    model: dict | None = None,
) -> HashingCheckpoint:
    """Train one bit length from scratch; returns the checkpoint object (not yet written).

    ``model``: a whole model config (e.g. the one an Original recorded) to use instead of resolving
    ``model_options`` at ``bits``.
    """
    data, split = loaded.data, loaded.split
    config = model if model is not None else model_config(data, split, bits, model_options or {}, loaded.spec)
    seed_everything(seed)
    model, preprocessor = initial_model(config)
    store = loaded.store_for(preprocessor)
    loss = DSPHLoss(data.num_classes, bits)
    if loaded.device is not None:
        model.to(loaded.device)
        loss.to(loaded.device)
    indices = training_indices(data, split, exclude)
    started = time.perf_counter()
    label = f"train {bits} bits" + (f" without {', '.join(exclude)}" if exclude else "")
    history = train_model(model, loss, store, indices, recipe, seed, label, show_progress)
    seconds = time.perf_counter() - started
    prototypes = compute_prototypes(model, store, indices)
    replaced = grey_images(data)
    run_config = {
        "model": config,
        "class_names": data.class_names,
        "dataset": loaded.spec.to_dict(),
        FINGERPRINT_KEY: loaded.fingerprint(),
        "training": {
            "recipe": recipe.to_dict(),
            "seed": seed,
            "excluded_classes": list(exclude),
            "num_train_samples": int(len(indices)),
            "loss_history": history,
            "seconds": seconds,
            "grey_images": len(replaced),
            "grey_image_examples": replaced[:5],
            "world_size": distributed.world_size(),
            "per_rank_batch_size": distributed.per_rank_batch_size(recipe.batch_size),
        },
        "environment": {**environment_stamp(), "device": str(module_device(model))},
    }
    return HashingCheckpoint(model, loss, preprocessor, run_config, prototypes)


def load_data(
    spec: DatasetSpec, device: torch.device | None = None, num_workers: int = 0, memory_budget: int = 4 << 30
) -> LoadedData:
    data, split = load_dataset(spec)
    return LoadedData(spec, data, split, device=device, num_workers=num_workers, memory_budget=memory_budget)
