"""Forget requests: which classes to forget and the index sets they induce."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import MultiModalData
from crossforget.data.splits import RetrievalSplit


@dataclass(frozen=True)
class ForgetRequest:
    """Class names to forget. A sample is in D_f when it carries at least one of them."""

    classes: tuple[str, ...]

    def __init__(self, classes: Sequence[str]) -> None:
        names = tuple(dict.fromkeys(c.strip() for c in classes if c.strip()))
        if not names:
            raise CrossforgetError("a forget request needs at least one class name (e.g. --forget dog)")
        object.__setattr__(self, "classes", names)

    def indices(self, class_names: Sequence[str]) -> list[int]:
        """Label indices of the forget classes; unknown names list the valid ones."""
        lookup = {c.lower(): i for i, c in enumerate(class_names)}
        out = []
        for name in self.classes:
            if name.lower() not in lookup:
                raise CrossforgetError(f"unknown class {name!r}; valid classes: {', '.join(class_names)}")
            out.append(lookup[name.lower()])
        if len(set(out)) == len(class_names):
            raise CrossforgetError("the request forgets every class; nothing would be retained")
        return out


@dataclass(frozen=True)
class ForgetPartition:
    """D_f / D_r on the training split and forget / retain queries for evaluation."""

    forget_classes: tuple[int, ...]
    train_forget: np.ndarray
    train_retain: np.ndarray
    query_forget: np.ndarray
    query_retain: np.ndarray

    def summary(self, class_names: Sequence[str]) -> dict:
        return {
            "forget_classes": [class_names[i] for i in self.forget_classes],
            "train_forget": int(self.train_forget.size),
            "train_retain": int(self.train_retain.size),
            "query_forget": int(self.query_forget.size),
            "query_retain": int(self.query_retain.size),
        }


def carries_any(labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Boolean mask of rows that carry at least one of ``classes``."""
    return labels[:, list(classes)].astype(bool).any(axis=1)


def partition(data: MultiModalData, split: RetrievalSplit, request: ForgetRequest) -> ForgetPartition:
    classes = request.indices(data.class_names)
    train_mask = carries_any(data.labels[split.train], classes)
    query_mask = carries_any(data.labels[split.query], classes)
    part = ForgetPartition(
        forget_classes=tuple(classes),
        train_forget=split.train[train_mask],
        train_retain=split.train[~train_mask],
        query_forget=split.query[query_mask],
        query_retain=split.query[~query_mask],
    )
    if part.train_forget.size == 0:
        names = ", ".join(request.classes)
        raise CrossforgetError(f"no training sample carries {names}; nothing to forget")
    return part
