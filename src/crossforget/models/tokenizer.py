"""A word-level tokenizer whose vocabulary is built from the training captions."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Maps a caption to a fixed-length id vector (0 = padding, 1 = unknown word)."""

    def __init__(self, vocabulary: Sequence[str], max_length: int = 24) -> None:
        if list(vocabulary[:2]) != [PAD, UNK]:
            raise ValueError("vocabulary must start with <pad>, <unk>")
        self.vocabulary = list(vocabulary)
        self.max_length = max_length
        self._ids = {w: i for i, w in enumerate(self.vocabulary)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, max_length: int = 24) -> WordTokenizer:
        counts = Counter(w for t in texts for w in words(t))
        kept = sorted(w for w, c in counts.items() if c >= min_count)
        return cls([PAD, UNK, *kept], max_length=max_length)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros((len(texts), self.max_length), dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self._ids.get(w, 1) for w in words(text)][: self.max_length]
            if ids:
                out[row, : len(ids)] = torch.tensor(ids)
        return out

    def to_config(self) -> dict:
        return {"vocabulary": self.vocabulary, "max_length": self.max_length}

    @classmethod
    def from_config(cls, config: dict) -> WordTokenizer:
        return cls(config["vocabulary"], config["max_length"])
