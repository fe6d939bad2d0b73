"""Membership inference: the SSD-code entropy attack and the shadow-model attack on separable toys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossforget.core.errors import CrossforgetError
from crossforget.metrics.mia import (
    ShadowAttack,
    attack_features,
    entropy_mia,
    membership_classifier,
    membership_rate,
    shadow_halves,
)

C = 5


def _confident(n: int, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Logits with almost all mass on one class (low entropy), the target class when given."""
    cls = targets if targets is not None else torch.arange(n) % C
    logits = torch.full((n, C), -6.0)
    logits[torch.arange(n), cls] = 6.0
    return logits


def _unsure(n: int) -> torch.Tensor:
    """Nearly uniform logits (entropy close to log C), slightly different per row."""
    return torch.linspace(0, 0.1, n).view(-1, 1) * torch.arange(C).float().view(1, -1)


def test_separable_features_give_full_and_zero_membership():
    members = np.linspace(0.0, 0.2, 20)
    non_members = np.linspace(1.0, 1.2, 20)
    attack = membership_classifier(members, non_members)
    assert membership_rate(attack, members) == 1.0
    assert membership_rate(attack, non_members) == 0.0
    assert np.isnan(membership_rate(attack, np.empty(0)))


def test_entropy_mia_on_logits():
    retain, test = _confident(30), _unsure(30)
    assert entropy_mia(retain, test, forget_logits=_confident(7)) == 1.0  # forget looks like training data
    assert entropy_mia(retain, test, forget_logits=_unsure(7)) == 0.0  # forget looks unseen
    mixed = torch.cat([_confident(3), _unsure(1)])
    assert entropy_mia(retain, test, forget_logits=mixed) == pytest.approx(0.75)


def test_balanced_weights_ignore_class_sizes():
    # 200 members vs 10 non-members: a midpoint threshold still holds with balanced class weights
    attack = membership_classifier(np.linspace(0, 0.2, 200), np.linspace(1.0, 1.2, 10))
    assert membership_rate(attack, np.array([0.3, 0.9])) == 0.5


def test_attack_needs_both_groups():
    with pytest.raises(CrossforgetError, match="member"):
        membership_classifier(np.empty(0), np.ones(3))


def test_attack_features_by_hand():
    logits = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    feats = attack_features(logits, torch.tensor([0, 1]))
    p = 1 / (1 + np.exp(-3.0))
    assert feats[0] == pytest.approx([np.log(0.5), np.log(2), np.log(0.5)])
    assert feats[1] == pytest.approx([np.log(1 - p), -(p * np.log(p) + (1 - p) * np.log(1 - p)), np.log(p)])


def test_shadow_attack_on_a_separable_toy():
    targets = torch.arange(40) % C
    attack = ShadowAttack.fit(_confident(40, targets), targets, _unsure(40), targets)
    assert attack.membership(_confident(10, targets[:10]), targets[:10]) == 1.0
    assert attack.membership(_unsure(10), targets[:10]) == 0.0
    # confident in the wrong class is not what the shadow members looked like
    wrong = (targets[:10] + 1) % C
    assert attack.membership(_confident(10, wrong), targets[:10]) == 0.0


def test_shadow_halves_are_stratified_and_complementary():
    indices = np.arange(100, 160)
    targets = np.repeat(np.arange(3), 20)
    a, b = shadow_halves(indices, targets, seed=4)
    assert np.intersect1d(a, b).size == 0
    assert np.array_equal(np.sort(np.concatenate([a, b])), indices)
    counts = np.bincount(targets[np.searchsorted(indices, a)], minlength=3)
    assert counts.tolist() == [10, 10, 10]
    again = shadow_halves(indices, targets, seed=4)
    assert np.array_equal(again[0], a)
