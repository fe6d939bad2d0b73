"""The cross-modal hashing model: two encoders, one hash head per modality."""

from __future__ import annotations

import torch
from torch import nn


class HashHead(nn.Module):
    """tanh(Dropout(0.2)(Linear(d, bits))), as in DSPH; sign() of the output is the binary code."""

    def __init__(self, in_dim: int, bits: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, bits)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dropout(self.linear(features)))


class CrossModalHasher(nn.Module):
    """Any image encoder and text encoder plug in here unchanged.

    An encoder declares ``out_dim`` and ``input_keys``: the batch entries it is called with, e.g.
    ``("images",)`` for a CNN, ``("text_ids", "text_mask")`` for a text encoder, or
    ``("image_features",)`` for an identity over cached backbone features.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, bits: int, dropout: float = 0.2):
        super().__init__()
        self.bits = bits
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_head = HashHead(image_encoder.out_dim, bits, dropout)
        self.text_head = HashHead(text_encoder.out_dim, bits, dropout)

    def encode_image(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.image_head(self.image_encoder(*(batch[k] for k in self.image_encoder.input_keys)))

    def encode_text(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.text_head(self.text_encoder(*(batch[k] for k in self.text_encoder.input_keys)))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(batch), self.encode_text(batch)
