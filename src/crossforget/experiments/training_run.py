"""Train the Original model (or a Retrain reference with ``exclude``) and write its checkpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crossforget.data.container import MultiModalData
from crossforget.data.forget import ForgetRequest, carries_any
from crossforget.data.registry import DatasetSpec, load_dataset
from crossforget.data.splits import RetrievalSplit
from crossforget.evaluation import encode
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import TensorStore
from crossforget.models.persist import HashingCheckpoint
from crossforget.models.tokenizer import WordTokenizer
from crossforget.reproducibility import environment_stamp, seed_everything
from crossforget.training import TrainingRecipe, train_model
from crossforget.unlearning.prototypes import class_prototypes

DEFAULT_MODEL = {"backbone": "small", "cnn_width": 32, "feature_dim": 256, "embed_dim": 128, "dropout": 0.2}


@dataclass
class LoadedData:
    """A dataset, its split and a tensor store built for one preprocessor."""

    spec: DatasetSpec
    data: MultiModalData
    split: RetrievalSplit
    store: TensorStore | None = None


def training_indices(data: MultiModalData, split: RetrievalSplit, exclude: Sequence[str]) -> np.ndarray:
    """The train split, minus every sample carrying an excluded class (the Retrain reference)."""
    if not exclude:
        return split.train
    classes = ForgetRequest(exclude).indices(data.class_names)
    return split.train[~carries_any(data.labels[split.train], classes)]


def model_config(data: MultiModalData, split: RetrievalSplit, bits: int, options: dict) -> dict:
    config = {**DEFAULT_MODEL, **options, "bits": bits}
    if config["backbone"] == "small":
        config.setdefault("image_size", 48)
        captions = [c for i in split.train for c in data.captions[int(i)]]
        config["tokenizer"] = WordTokenizer.build(captions).to_config()
    return config


def compute_prototypes(model: torch.nn.Module, store: TensorStore, indices: np.ndarray) -> dict[str, torch.Tensor]:
    """Eq. 2 prototypes of each modality from the trained model, stored with the checkpoint."""
    codes = encode(model, store, indices)
    labels = store.labels[torch.as_tensor(indices)]
    return {"image": class_prototypes(codes.image, labels), "text": class_prototypes(codes.text, labels)}


def train_hashing(loaded: LoadedData, bits: int, recipe: TrainingRecipe, seed: int,
                  exclude: Sequence[str] = (), model_options: dict | None = None,
                  show_progress: bool = True) -> HashingCheckpoint:
    """Train one bit length from scratch; returns the checkpoint object (not yet written)."""
    data, split = loaded.data, loaded.split
    config = model_config(data, split, bits, model_options or {})
    seed_everything(seed)
    model, preprocessor = build_hasher(config)
    if loaded.store is None or loaded.store.preprocessor.to_config() != preprocessor.to_config():
        loaded.store = TensorStore(data, preprocessor)
    loss = DSPHLoss(data.num_classes, bits)
    indices = training_indices(data, split, exclude)
    started = time.perf_counter()
    label = f"train {bits} bits" + (f" without {', '.join(exclude)}" if exclude else "")
    history = train_model(model, loss, loaded.store, indices, recipe, seed, label, show_progress)
    seconds = time.perf_counter() - started
    prototypes = compute_prototypes(model, loaded.store, indices)
    run_config = {
        "model": config,
        "class_names": data.class_names,
        "dataset": loaded.spec.to_dict(),
        "training": {"recipe": recipe.to_dict(), "seed": seed, "excluded_classes": list(exclude),
                     "num_train_samples": int(len(indices)), "loss_history": history, "seconds": seconds},
        "environment": environment_stamp(),
    }
    return HashingCheckpoint(model, loss, preprocessor, run_config, prototypes)


def load_data(spec: DatasetSpec) -> LoadedData:
    data, split = load_dataset(spec)
    return LoadedData(spec, data, split)
