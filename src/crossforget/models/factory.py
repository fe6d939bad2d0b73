"""Build a hashing model and its preprocessor from a plain config dict (configs are data)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.models.hashing import CrossModalHasher
from crossforget.models.inputs import Inputs, Preprocessor, WordPreprocessor
from crossforget.models.small import SmallCNN, WordEmbeddingEncoder
from crossforget.models.tokenizer import WordTokenizer

BackboneBuilder = Callable[[dict], tuple[nn.Module, nn.Module, Inputs]]
_BACKBONES: dict[str, BackboneBuilder] = {}
# Backbones registered by modules imported on first use (CLIP pulls in transformers).
_LAZY = {"clip": "crossforget.models.clip", "clip-features": "crossforget.models.features"}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def decorate(builder: BackboneBuilder) -> BackboneBuilder:
        _BACKBONES[name] = builder
        return builder

    return decorate


def backbone_names() -> list[str]:
    return sorted(set(_BACKBONES) | set(_LAZY))


@register_backbone("small")
def _small(config: dict) -> tuple[nn.Module, nn.Module, Preprocessor]:
    tokenizer = WordTokenizer.from_config(config["tokenizer"])
    image = SmallCNN(width=config.get("cnn_width", 32), out_dim=config.get("feature_dim", 256))
    text = WordEmbeddingEncoder(
        len(tokenizer), embed_dim=config.get("embed_dim", 128), out_dim=config.get("feature_dim", 256)
    )
    return image, text, WordPreprocessor(config["image_size"], tokenizer)


def build_hasher(config: dict) -> tuple[CrossModalHasher, Inputs]:
    """``config["backbone"]`` picks the encoders; the heads, loss and training loop never change."""
    name = config.get("backbone", "small")
    if name not in _BACKBONES and name in _LAZY:
        importlib.import_module(_LAZY[name])
    if name not in _BACKBONES:
        raise CrossforgetError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}")
    image, text, preprocessor = _BACKBONES[name](config)
    return CrossModalHasher(image, text, config["bits"], config.get("dropout", 0.2)), preprocessor
