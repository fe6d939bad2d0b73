"""Frozen-backbone mode: hash heads trained on CLIP embeddings cached in a safetensors file.

The file (written by ``crossforget features extract``) holds ``image`` (N, d) and ``text`` (N, K, d)
embeddings in float16 (half the size; CLIP embeddings are O(1), far from float16's range limits),
``num_captions`` (N,) and metadata: the dataset spec, the CLIP model, a hash of the label matrix.
Captions of items with fewer than K are repeated cyclically, as ``TensorStore`` does. A checkpoint
stores the file's path and sha256; a file that moved or changed is refused with the fix.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from crossforget.core import digest
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_bytes
from crossforget.data.container import MultiModalData
from crossforget.losses.base import Batch
from crossforget.models.factory import register_backbone
from crossforget.models.inputs import CachedInputs

FORMAT = "crossforget-features/1"
MODEL_OPTIONS = ("backbone", "features", "dropout")


def labels_digest(labels: np.ndarray) -> str:
    """sha256 of the uint8 label matrix: ties a features file to the exact items of a dataset."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """The digest, cached per (path, size, modification time): a changed file is hashed again."""
    return digest.file_sha256(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised per (path, size, modification time)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        message = f"cannot read features file {path} ({exc.strerror}); check the --features path"
        raise CrossforgetError(message) from exc
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def write_features(
    path: str | Path,
    image: torch.Tensor,
    text: torch.Tensor,
    num_captions: torch.Tensor,
    data: MultiModalData,
    dataset: dict,
    clip_model: str,
) -> None:
    """Write a features file atomically (complete or absent); ``dataset`` is {"name", "options"}."""
    if not (torch.isfinite(image).all() and torch.isfinite(text).all()):
        raise CrossforgetError(
            "the CLIP embeddings contain NaN or Inf; check the model weights and the images"
        )
    metadata = {
        "format": FORMAT,
        "dataset": json.dumps(dataset, sort_keys=True),
        "clip_model": clip_model,
        "labels_sha256": labels_digest(data.labels),
        "class_names": json.dumps(data.class_names),
        "feature_dim": str(image.shape[1]),
    }
    tensors = {
        "image": image.to(torch.float16).contiguous(),
        "text": text.to(torch.float16).contiguous(),
        "num_captions": num_captions.to(torch.int64).contiguous(),
    }
    atomic_write_bytes(path, save(tensors, metadata))


def read_metadata(path: str | Path) -> dict:
    """The metadata of a features file, with ``dataset`` decoded; errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CrossforgetError(
            f"features file {path} does not exist; create it with `crossforget features extract "
            f"--dataset ... --clip-model ... --out {path}`"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CrossforgetError(
            f"{path} is not a readable safetensors file ({exc}); extract the features again"
        ) from exc
    if metadata.get("format") != FORMAT:
        raise CrossforgetError(
            f"{path} is not a crossforget features file (format {metadata.get('format')!r}); "
            "create one with `crossforget features extract`"
        )
    metadata["dataset"] = json.loads(metadata["dataset"])
    return metadata


class CachedFeatures(nn.Module):
    """Identity encoder over one batch entry of cached embeddings (the frozen backbone's output)."""

    def __init__(self, key: str, dim: int) -> None:
        super().__init__()
        self.input_keys = (key,)
        self.out_dim = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@dataclass(frozen=True)
class FeatureInputs:
    """The ``CachedInputs`` of a clip-features model: which file, verified by its sha256."""

    path: str
    sha256: str
    feature_dim: int

    def to_config(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "feature_dim": self.feature_dim}

    def open_store(self, data: MultiModalData, device: torch.device | None) -> FeatureStore:
        path = Path(self.path)
        if not path.is_file():
            raise CrossforgetError(
                f"features file {path} (this model was trained on it) is missing; move it back to that path, "
                f"or re-create it there with the same `crossforget features extract ... --out {path}` command"
            )
        actual = file_sha256(path)
        if actual != self.sha256:
            raise CrossforgetError(
                f"features file {path} changed since this model was trained (sha256 {actual[:12]}..., "
                f"expected {self.sha256[:12]}...); restore the original file, or train again on it with "
                f"`crossforget train --backbone clip-features --features {path}`"
            )
        return FeatureStore(data, self, device)


class FeatureStore:
    """A ``BatchSource`` over cached embeddings: batches hold image_features, text_features, labels."""

    def __init__(
        self, data: MultiModalData, inputs: FeatureInputs, device: torch.device | None = None
    ) -> None:
        metadata = read_metadata(inputs.path)
        self.preprocessor = inputs
        self.device = device
        tensors = load_file(inputs.path)
        self.image, self.text = tensors["image"], tensors["text"]
        self.num_captions = tensors["num_captions"]
        if self.image.shape[0] != len(data) or metadata["labels_sha256"] != labels_digest(data.labels):
            raise CrossforgetError(
                f"{inputs.path} holds features of {self.image.shape[0]} items of another version of dataset "
                f"{metadata['dataset']['name']} than the {len(data)} loaded; extract the features again "
                "with the same --dataset/--data-root/--data-option as training"
            )
        if not torch.equal(self.num_captions, torch.tensor([len(c) for c in data.captions])):
            raise CrossforgetError(
                f"{inputs.path}: caption counts differ from the dataset's; extract the features "
                "again from this dataset"
            )
        self.labels = torch.from_numpy(data.labels.astype(np.float32))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> Batch:
        if caption is None:
            caption = torch.zeros_like(indices)
        batch = {
            "image_features": self.image[indices].float(),
            "text_features": self.text[indices, caption].float(),
            "labels": self.labels[indices],
        }
        if self.device is None:
            return batch
        return {key: value.to(self.device) for key, value in batch.items()}


def features_model_config(options: dict, dataset: dict) -> dict:
    """Model config of a clip-features hasher; ``dataset`` ({"name", "options"}) must match the file's."""
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise CrossforgetError(
            f"the clip-features backbone takes no model option(s) {unknown}; it takes {list(MODEL_OPTIONS)}"
        )
    if not options.get("features"):
        raise CrossforgetError(
            "--backbone clip-features needs --features FILE (written by `crossforget features extract`)"
        )
    path = Path(options["features"]).resolve()
    metadata = read_metadata(path)
    if metadata["dataset"] != dataset:
        raise CrossforgetError(
            f"{path} holds features of dataset {metadata['dataset']}, but training asked for {dataset}; pass "
            "the same --dataset/--data-root/--data-option as `features extract` (or leave them out)"
        )
    return {
        "backbone": "clip-features",
        "features": {
            "path": str(path),
            "sha256": file_sha256(path),
            "feature_dim": int(metadata["feature_dim"]),
        },
        "clip_model": metadata["clip_model"],
        "dropout": float(options.get("dropout", 0.2)),
        "pretrained": True,
    }


@register_backbone("clip-features")
def _clip_features(config: dict) -> tuple[nn.Module, nn.Module, CachedInputs]:
    inputs = FeatureInputs(**config["features"])
    dim = inputs.feature_dim
    return CachedFeatures("image_features", dim), CachedFeatures("text_features", dim), inputs
