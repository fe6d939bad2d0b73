"""Retrieval evaluation under a forget request: D_r mAP and two readings of D_f mAP, I2T and T2I.

D_r mAP: queries without a forget label, relevance = any shared label.
D_f mAP (forget label): queries with a forget label, relevant = database items carrying a forget
label ("is the forgotten concept still retrievable?"). D_f mAP (any label): the same queries,
relevance = any shared label. Each comes with the chance level: the exact expected mAP (mAP@k under
``topk``) of a uniformly random ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crossforget.core import distributed
from crossforget.core.device import autocast, module_device
from crossforget.data.forget import ForgetPartition
from crossforget.data.splits import RetrievalSplit
from crossforget.metrics.keys import (
    DIRECTIONS,
    FORGET_ANY,
    FORGET_LABEL,
    I2T,
    RETAIN,
    RETRIEVAL,
    display_names,
)
from crossforget.metrics.retrieval import mean_average_precision, random_ranking_map
from crossforget.models.inputs import BatchSource, iterate_batches

METRICS = display_names(RETRIEVAL)


@dataclass
class Codes:
    """Real-valued codes (tanh outputs) of both modalities for a set of items."""

    image: torch.Tensor
    text: torch.Tensor


@torch.no_grad()
def encode(model: nn.Module, store: BatchSource, indices: np.ndarray, batch_size: int = 512) -> Codes:
    """Codes as float32 on the CPU, wherever the model runs (bf16 autocast on CUDA).

    Under torchrun each rank encodes a block of whole batches (the single-process batches, so the
    same codes) and every rank receives all codes in item order.
    """
    model.eval()
    device = module_device(model)
    sharded = distributed.is_active()
    if sharded:
        indices = distributed.shard_batches(indices, batch_size)
    images, texts = [], []
    for batch in iterate_batches(store, indices, batch_size):
        with autocast(device):
            image_codes, text_codes = model(batch)
        images.append(image_codes.float().cpu())
        texts.append(text_codes.float().cpu())
    if sharded:
        image, text = (torch.cat(parts) if parts else None for parts in (images, texts))
        return Codes(distributed.gather_rows(image), distributed.gather_rows(text))
    return Codes(torch.cat(images), torch.cat(texts))


def _score(
    query: torch.Tensor, database: torch.Tensor, q_labels: np.ndarray, d_labels: np.ndarray, topk: int | None
) -> tuple[float, float]:
    if query.shape[0] == 0:
        return float("nan"), float("nan")
    value = mean_average_precision(query, database, q_labels, d_labels, topk=topk)
    return float(value), float(random_ranking_map(q_labels, d_labels, topk=topk))


def retrieval_scores(
    query: Codes,
    database: Codes,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    forget_mask: np.ndarray,
    forget_classes: list[int],
    topk: int | None = None,
) -> list[dict]:
    """One record per direction with the three metrics and their chance levels."""
    records = []
    keep = ~forget_mask
    f_cols = list(forget_classes)
    for direction in DIRECTIONS:
        q = query.image if direction == I2T else query.text
        d = database.text if direction == I2T else database.image
        record: dict = {"direction": direction}
        chance: dict = {}
        record[RETAIN], chance[RETAIN] = _score(
            q[torch.from_numpy(keep)], d, query_labels[keep], db_labels, topk
        )
        fq = torch.from_numpy(forget_mask)
        record[FORGET_LABEL], chance[FORGET_LABEL] = _score(
            q[fq], d, query_labels[forget_mask][:, f_cols], db_labels[:, f_cols], topk
        )
        record[FORGET_ANY], chance[FORGET_ANY] = _score(q[fq], d, query_labels[forget_mask], db_labels, topk)
        record["chance"] = chance
        records.append(record)
    return records


def evaluate_model(
    model: nn.Module,
    store: BatchSource,
    split: RetrievalSplit,
    partition: ForgetPartition,
    topk: int | None = None,
) -> list[dict]:
    """Encode queries and database once, then score both directions."""
    labels = store.labels.numpy().astype(np.uint8)
    query = encode(model, store, split.query)
    database = encode(model, store, split.database)
    forget_mask = np.isin(split.query, partition.query_forget)
    return retrieval_scores(
        query,
        database,
        labels[split.query],
        labels[split.database],
        forget_mask,
        list(partition.forget_classes),
        topk,
    )
