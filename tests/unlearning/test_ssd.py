"""SSD update rule on a hand-computed example.

alpha = 2, lambda = 3: selected = I_f > 2 * I_D (strict); w = min(3 * I_D / I_f, 1).

entry  I_f  I_D  theta | selected?              | w                     | new
0      2    1    5     | 2 > 2 no (boundary)    | -                     | 5
1      4    1    8     | 4 > 2 yes              | 3/4                   | 6
2      1    0    7     | 1 > 0 yes              | 0                     | 0
3      5    2    9     | 5 > 4 yes              | min(6/5, 1) = 1 (cap) | 9
4      0    0    3     | 0 > 0 no (no 0/0)      | -                     | 3
5      12   1    4     | 12 > 2 yes             | 3/12 = 1/4            | 1
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.ssd import ssd_dampen

I_F = torch.tensor([2.0, 4.0, 1.0, 5.0, 0.0, 12.0])
I_D = torch.tensor([1.0, 1.0, 0.0, 2.0, 0.0, 1.0])
THETA = torch.tensor([5.0, 8.0, 7.0, 9.0, 3.0, 4.0])


def test_ssd_rule_by_hand() -> None:
    theta = THETA.clone()
    counts = ssd_dampen({"p": theta}, {"p": I_F}, {"p": I_D}, alpha=2.0, lam=3.0)
    assert counts == {"p": 4}
    assert theta.tolist() == [5.0, 6.0, 0.0, 9.0, 3.0, 1.0]


def test_defaults_are_the_reference_ones() -> None:
    theta = torch.tensor([4.0, 4.0])
    # alpha 10, lambda 1: 10 > 10 is not selected; 32 > 10 -> w = 1/32
    counts = ssd_dampen({"p": theta}, {"p": torch.tensor([10.0, 32.0])}, {"p": torch.tensor([1.0, 1.0])})
    assert counts == {"p": 1}
    assert theta.tolist() == [4.0, 0.125]


def test_module_parameters_in_place_and_others_untouched() -> None:
    layer = nn.Linear(6, 1)
    with torch.no_grad():
        layer.weight.copy_(THETA)
    bias = layer.bias.detach().clone()
    ssd_dampen(layer, {"weight": I_F[None]}, {"weight": I_D[None]}, alpha=2.0, lam=3.0)
    assert layer.weight.tolist() == [[5.0, 6.0, 0.0, 9.0, 3.0, 1.0]]
    assert torch.equal(layer.bias, bias)
    assert layer.weight.requires_grad


def test_missing_key_is_named() -> None:
    with pytest.raises(CrossforgetError, match="full Fisher has no entry for 'q'"):
        ssd_dampen({"p": THETA.clone(), "q": THETA.clone()}, {"p": I_F, "q": I_F}, {"p": I_D})
    with pytest.raises(CrossforgetError, match="forget Fisher has no entry for 'q'"):
        ssd_dampen({"p": THETA.clone(), "q": THETA.clone()}, {"p": I_F}, {"p": I_D, "q": I_D})
    with pytest.raises(CrossforgetError, match="'p', which the model does not have"):
        ssd_dampen({"q": THETA.clone()}, {"p": I_F}, {"p": I_D})


def test_non_finite_and_negative_fishers_are_rejected() -> None:
    with pytest.raises(CrossforgetError, match="forget Fisher of parameter 'p' contains NaN"):
        ssd_dampen({"p": THETA.clone()}, {"p": I_F * float("inf")}, {"p": I_D})
    with pytest.raises(CrossforgetError, match="negative"):
        ssd_dampen({"p": THETA.clone()}, {"p": I_F}, {"p": -I_D})
