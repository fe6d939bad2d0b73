"""Verification numbers of a forget request: held-out mAP before and after, and the entropy MIA.

Everything is computed from the codes of the index versions before and after (the database holds
every sample used, training items included), so verification costs no forward pass of its own.

- **mAP** on ``tune``'s validation split of what remains (database \\ train, 500 held-out items by
  default, never the query split) against the rest of the pre-request database: D_f = queries carrying
  a class of this request (forget-label relevance), D_r = queries carrying no class forgotten so far
  (this request's or an earlier one's); both directions, ``evaluation.retrieval_scores``.
- **Entropy MIA** (``metrics.mia``, the SSD-code attack) on the forgotten training items: class scores
  are the cosine of a binary code with the DSPH class proxies over a temperature of 0.1; the features
  are the softmax entropies of the image and the text code; members = retained training items,
  non-members = the held-out validation items; the number is the share of forgotten training items
  the attack calls members (lower: they look less like training data). ``mia_reference`` gives the
  attack's rate on its own members and non-members: how far it separates them at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from crossforget.data.forget import carries_any
from crossforget.data.splits import RetrievalSplit
from crossforget.data.validation import validation_split
from crossforget.metrics.classification import softmax_entropy
from crossforget.metrics.keys import PRIMARY_FORGET, RETAIN
from crossforget.metrics.mia import membership_classifier, membership_rate
from crossforget.metrics.retrieval import unpack_codes
from crossforget.tasks.hashing.evaluation import Codes, retrieval_scores

MIA_SAMPLES = 500
TEMPERATURE = 0.1


@dataclass(frozen=True)
class VerificationSample:
    """Dataset indices of each verification set (all within the pre-request index)."""

    queries: np.ndarray
    database: np.ndarray
    members: np.ndarray
    non_members: np.ndarray
    targets: np.ndarray

    def describe(self) -> dict:
        return {
            "queries": int(self.queries.size),
            "database": int(self.database.size),
            "mia_members": int(self.members.size),
            "mia_non_members": int(self.non_members.size),
            "mia_targets": int(self.targets.size),
            "split": "validation (database \\ train), never the query split",
        }


def _sample(items: np.ndarray, size: int, seed: int) -> np.ndarray:
    if items.size <= size:
        return np.sort(items)
    return np.sort(np.random.default_rng(seed).choice(items, size=size, replace=False))


def verification_sample(
    view: RetrievalSplit, labels: np.ndarray, request: Sequence[int], forgotten: Sequence[int], seed: int = 0
) -> VerificationSample:
    """The sets for a request (class indices ``request``; ``forgotten``: every class forgotten by the
    index after it) on ``view``, the split of what remained before the request."""
    val = validation_split(view)
    train = view.train
    in_request = carries_any(labels[train], request)
    return VerificationSample(
        queries=val.query,
        database=val.database,
        members=_sample(train[~carries_any(labels[train], forgotten)], MIA_SAMPLES, seed),
        non_members=val.query,
        targets=_sample(train[in_request], MIA_SAMPLES, seed + 1),
    )


def _codes(ids: np.ndarray, codes: dict[str, np.ndarray], rows: np.ndarray, bits: int) -> Codes:
    at = np.searchsorted(ids, rows)
    return Codes(
        image=torch.from_numpy(unpack_codes(codes["image"][at], bits)),
        text=torch.from_numpy(unpack_codes(codes["text"][at], bits)),
    )


def _entropies(codes: Codes, proxies: torch.Tensor) -> np.ndarray:
    p = F.normalize(proxies.detach().float().cpu(), dim=1)
    feats = [softmax_entropy(F.normalize(c, dim=1) @ p.T / TEMPERATURE) for c in (codes.image, codes.text)]
    return torch.stack(feats, dim=1).numpy()


def _nan_to_none(value: float) -> float | None:
    return None if value != value else float(value)


def scores(
    sample: VerificationSample,
    ids: np.ndarray,
    codes: dict[str, np.ndarray],
    bits: int,
    labels: np.ndarray,
    proxies: torch.Tensor,
    request: Sequence[int],
    forgotten: Sequence[int],
) -> dict:
    """mAP (D_f, D_r per direction) and MIA of one model's codes (``codes`` rows in ``ids`` order)."""
    q_labels = labels[sample.queries]
    forget_q = carries_any(q_labels, request)
    keep = forget_q | ~carries_any(q_labels, forgotten)
    queries = sample.queries[keep]
    records = retrieval_scores(
        _codes(ids, codes, queries, bits),
        _codes(ids, codes, sample.database, bits),
        labels[queries],
        labels[sample.database],
        forget_q[keep],
        list(request),
    )
    out: dict = {
        r["direction"]: {"D_f": _nan_to_none(r[PRIMARY_FORGET]), "D_r": _nan_to_none(r[RETAIN])}
        for r in records
    }
    out["chance"] = {
        r["direction"]: {
            "D_f": _nan_to_none(r["chance"][PRIMARY_FORGET]),
            "D_r": _nan_to_none(r["chance"][RETAIN]),
        }
        for r in records
    }
    out["mia"], out["mia_reference"] = None, None
    if sample.targets.size and sample.members.size and sample.non_members.size:
        members = _entropies(_codes(ids, codes, sample.members, bits), proxies)
        non_members = _entropies(_codes(ids, codes, sample.non_members, bits), proxies)
        attack = membership_classifier(members, non_members)
        out["mia"] = membership_rate(attack, _entropies(_codes(ids, codes, sample.targets, bits), proxies))
        # How well the attack separates at all: its rate on the very sets it was fitted on.
        out["mia_reference"] = {
            "members": membership_rate(attack, members),
            "non_members": membership_rate(attack, non_members),
        }
    return out
