"""Membership inference attacks (MIA) on classifiers.

``entropy_mia`` is the attack of the SSD and Bad Teacher code: one feature, the entropy of the softmax
output; a logistic regression (balanced class weights) learns members (retain training samples, 1)
from non-members (test samples, 0); the score is the mean predicted membership (hard 0/1 predictions)
of the forget samples. Lower means the forget samples look less like training data.

``ShadowAttack`` follows Shokri et al. (S&P 2017): shadow models of the target's architecture are
trained on data whose membership the attacker knows, and an attack model learns membership from the
shadow models' outputs; it is then applied to the target's outputs. Simplifications, documented in
docs/classification.md: one class-agnostic attack model (not one per class) on three features of the
softmax output and the true label, with standardised inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from crossforget.core.errors import CrossforgetError
from crossforget.metrics.classification import softmax_entropy


def _as_features(values: np.ndarray | torch.Tensor) -> np.ndarray:
    array = (
        values.detach().cpu().double().numpy()
        if isinstance(values, torch.Tensor)
        else np.asarray(values, float)
    )
    return array.reshape(-1, 1) if array.ndim == 1 else array


def membership_classifier(
    members: np.ndarray | torch.Tensor, non_members: np.ndarray | torch.Tensor, scale: bool = False
) -> LogisticRegression | Pipeline:
    """A logistic regression (balanced class weights, lbfgs) fitted on members (1) vs non-members (0)."""
    x_in, x_out = _as_features(members), _as_features(non_members)
    if x_in.shape[0] == 0 or x_out.shape[0] == 0:
        raise CrossforgetError("a membership attack needs both member and non-member samples to learn from")
    features = np.concatenate([x_in, x_out])
    labels = np.concatenate([np.ones(x_in.shape[0]), np.zeros(x_out.shape[0])])
    model = LogisticRegression(class_weight="balanced", solver="lbfgs", max_iter=1000)
    if scale:
        model = make_pipeline(StandardScaler(), model)
    return model.fit(features, labels)


def membership_rate(attack: LogisticRegression | Pipeline, targets: np.ndarray | torch.Tensor) -> float:
    """Mean predicted membership (hard 0/1 predictions) of the target samples; NaN when there are none."""
    x = _as_features(targets)
    if x.shape[0] == 0:
        return float("nan")
    return float(attack.predict(x).mean())


def entropy_mia(retain_logits: torch.Tensor, test_logits: torch.Tensor, forget_logits: torch.Tensor) -> float:
    """The SSD-code MIA: entropy feature, retain-train (members) vs test (non-members), forget score."""
    attack = membership_classifier(softmax_entropy(retain_logits), softmax_entropy(test_logits))
    return membership_rate(attack, softmax_entropy(forget_logits))


def attack_features(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """(N, 3): log-probability of the true class, entropy, and the largest log-probability.

    Class-agnostic summaries of Shokri et al.'s (prediction vector, label) input: a model is more
    confident, and more confident in the right class, on the samples it was trained on.
    """
    log_p = torch.log_softmax(logits.double(), dim=1)
    true = log_p.gather(1, targets.long().view(-1, 1)).squeeze(1).clamp_min(-50.0)
    return torch.stack([true, softmax_entropy(logits), log_p.max(dim=1).values], dim=1).numpy()


@dataclass
class ShadowAttack:
    """An attack model learned from shadow models' outputs on their own members and non-members."""

    model: Pipeline
    shadow_samples: dict[str, int]

    @classmethod
    def fit(
        cls,
        in_logits: torch.Tensor,
        in_targets: torch.Tensor,
        out_logits: torch.Tensor,
        out_targets: torch.Tensor,
    ) -> ShadowAttack:
        """``in_*``: shadow outputs on the shadow models' training samples; ``out_*``: on held-out ones."""
        model = membership_classifier(
            attack_features(in_logits, in_targets), attack_features(out_logits, out_targets), scale=True
        )
        return cls(model, {"members": int(in_targets.numel()), "non_members": int(out_targets.numel())})

    def membership(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean predicted membership of the target model's samples (e.g. its forget samples)."""
        if targets.numel() == 0:
            return float("nan")
        return membership_rate(self.model, attack_features(logits, targets))


def shadow_halves(indices: np.ndarray, targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a pool (e.g. the test split) into two class-stratified halves, for two shadow models.

    Shadow model 1 trains on half A (members) with half B held out, shadow model 2 the other way
    round, so every pool sample is a member of one shadow model and a non-member of the other.
    """
    rng = np.random.default_rng(seed)
    first, second = [], []
    for cls in np.unique(targets):
        members = rng.permutation(indices[targets == cls])
        cut = (members.size + rng.integers(0, 2)) // 2
        first.append(members[:cut])
        second.append(members[cut:])
    a, b = np.sort(np.concatenate(first)), np.sort(np.concatenate(second))
    if a.size == 0 or b.size == 0:
        raise CrossforgetError("the shadow-model pool is too small to split into members and non-members")
    return a, b
