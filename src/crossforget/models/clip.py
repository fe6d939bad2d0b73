"""The CLIP backbone (transformers ``CLIPModel``): DSPH's encoders, rebuilt from the config alone.

Image feature = vision tower + visual projection (the CLIP image embedding); text feature = text tower
at the end-of-text token + text projection. A checkpoint's model config stores the ``CLIPConfig`` as
a dict and the tokenizer's ``tokenizer.json`` content, so ``build_hasher`` needs no download and no
model folder; the weights come from the checkpoint. Pretrained weights are read from a local folder
(or the local Hugging Face cache) only when training starts from them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from crossforget.core.errors import CrossforgetError
from crossforget.models.factory import register_backbone
from crossforget.models.inputs import Preprocessor

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
MAX_TEXT_LENGTH = 32
MODEL_OPTIONS = ("backbone", "clip_model", "dropout", "max_text_length")


class ClipImageEncoder(nn.Module):
    """Vision tower + visual projection; submodule names match ``CLIPModel`` so its weights load as is."""

    input_keys = ("images",)

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.visual_projection = clip.visual_projection
        self.out_dim = clip.visual_projection.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=images).pooler_output)


class ClipTextEncoder(nn.Module):
    """Text tower read at the end-of-text token (the last unpadded position), then the text projection.

    No padding mask is passed: attention is causal and padding follows the end-of-text token, so that
    token never sees the padding (as in the original CLIP, which uses no padding mask either).
    """

    input_keys = ("text_ids", "text_mask")

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.text_model = clip.text_model
        self.text_projection = clip.text_projection
        self.out_dim = clip.text_projection.out_features

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_model(input_ids=text_ids).last_hidden_state
        end = (text_mask.long().sum(dim=1) - 1).clamp_min(0)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.text_projection(hidden[rows, end])


@dataclass
class ClipPreprocessor:
    """CLIP pixel statistics and BPE tokenizer (rebuilt from the stored ``tokenizer.json`` content)."""

    image_size: int
    tokenizer_json: str
    pad_id: int
    max_length: int = MAX_TEXT_LENGTH
    mean: tuple[float, float, float] = tuple(OPENAI_CLIP_MEAN)
    std: tuple[float, float, float] = tuple(OPENAI_CLIP_STD)
    _tokenizer: Tokenizer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        self._tokenizer.enable_truncation(self.max_length)
        self._tokenizer.enable_padding(
            length=self.max_length,
            pad_id=self.pad_id,
            pad_token=self._tokenizer.id_to_token(self.pad_id) or "",
        )

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B,H,W,3) -> normalised float (B,3,S,S); other sizes: short side resized, centre crop."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32)
        height, width = x.shape[2:]
        if (height, width) != (self.image_size, self.image_size):
            scale = self.image_size / min(height, width)
            size = (max(self.image_size, round(height * scale)), max(self.image_size, round(width * scale)))
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
            top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
            x = x[:, :, top : top + self.image_size, left : left + self.image_size].clamp(0.0, 255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Start token, BPE tokens, end token, padded/truncated to ``max_length``; mask 1 on real tokens."""
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long).view(len(texts), self.max_length)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long).view(
            len(texts), self.max_length
        )
        return ids, mask

    def to_config(self) -> dict:
        return {
            "image_size": self.image_size,
            "tokenizer": self.tokenizer_json,
            "pad_id": self.pad_id,
            "max_length": self.max_length,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def _clip_from_config(config: dict) -> CLIPModel:
    """A randomly initialised CLIPModel of the stored architecture (no file or network access)."""
    return CLIPModel(CLIPConfig.from_dict(config["clip_config"]))


@register_backbone("clip")
def _clip(config: dict) -> tuple[nn.Module, nn.Module, Preprocessor]:
    clip = _clip_from_config(config)
    preprocessor = ClipPreprocessor(
        clip.config.vision_config.image_size,
        config["tokenizer"],
        int(config["pad_id"]),
        int(config.get("max_text_length", MAX_TEXT_LENGTH)),
    )
    return ClipImageEncoder(clip), ClipTextEncoder(clip), preprocessor


@dataclass(frozen=True)
class LocalClip:
    """A CLIP model and its tokenizer read from local files."""

    model: CLIPModel
    tokenizer_json: str
    pad_id: int


@functools.lru_cache(maxsize=1)
def load_local_clip(source: str) -> LocalClip:
    """Load ``source`` (a folder, or a hub id already in the local cache) without touching the network."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = CLIPModel.from_pretrained(source, local_files_only=True)
        tokenizer = CLIPTokenizerFast.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CrossforgetError(
            f"cannot find CLIP model {source!r} locally (nothing is downloaded); pass --clip-model "
            "/path/to/folder (a folder saved with save_pretrained or downloaded with huggingface-cli)"
        ) from exc
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.float().eval()  # float32 master weights, whatever precision the folder was saved in
    return LocalClip(model, backend.to_str(), int(pad_id))


def clip_model_config(options: dict) -> dict:
    """The model config of a CLIP hashing model initialised from ``options["clip_model"]``."""
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise CrossforgetError(
            f"the clip backbone takes no model option(s) {unknown}; it takes {list(MODEL_OPTIONS)}"
        )
    source = str(options.get("clip_model") or DEFAULT_CLIP_MODEL)
    if Path(source).is_dir():  # a folder is recorded absolutely: Retrain and Bad model read it again
        source = str(Path(source).resolve())
    local = load_local_clip(source)
    max_length = int(options.get("max_text_length", MAX_TEXT_LENGTH))
    positions = local.model.config.text_config.max_position_embeddings
    if not 2 <= max_length <= positions:
        raise CrossforgetError(
            f"max_text_length must be between 2 and {positions} for {source}, got {max_length}"
        )
    return {
        "backbone": "clip",
        "clip_model": source,
        "clip_config": local.model.config.to_dict(),
        "tokenizer": local.tokenizer_json,
        "pad_id": local.pad_id,
        "max_text_length": max_length,
        "dropout": float(options.get("dropout", 0.2)),
        "pretrained": True,
    }


def load_pretrained_clip(image_encoder: nn.Module, text_encoder: nn.Module, source: str) -> None:
    """Copy the pretrained weights of ``source`` into freshly built encoders (same architecture required)."""
    state = load_local_clip(source).model.state_dict()
    for encoder, prefixes in (
        (image_encoder, ("vision_model.", "visual_projection.")),
        (text_encoder, ("text_model.", "text_projection.")),
    ):
        part = {k: v for k, v in state.items() if k.startswith(prefixes)}
        try:
            encoder.load_state_dict(part, strict=True)
        except RuntimeError as exc:
            raise CrossforgetError(
                f"the CLIP weights of {source!r} do not fit the stored architecture: "
                f"{str(exc).splitlines()[0]}; train again from this CLIP model"
            ) from exc
