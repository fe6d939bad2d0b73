"""PPP Eqs. 5-7 on a 2x3 parameter small enough to check by hand.

alpha = 2, tau = 4, lambda = 2, lambda_max = 0.5, gamma = 4, core_sign = -1.

entry  I_f  I_n  I_r  theta | Eq. 5                      | Eq. 6: min((2 I_r / I_f)^2, 0.5) | Eq. 7
(0,0)  1    1    1    3     | 1 <= 2*1 -> S              | -                                | 3
(0,1)  2    1    1    5     | 2 <= 2*1 (equal) -> S      | -                                | 5
(0,2)  4    2    1    8     | 4 > 2; 4 < 4*2 -> B        | (2/4)^2 = 1/4                    | 8/4 = 2
(1,0)  8    2    2    4     | 8 > 4; 8 = 4*2 (not <) -> C| (4/8)^2 = 1/4                    | -4*4/4 = -4
(1,1)  16   1    1    2     | 16 > 2; 16 >= 4 -> C       | (2/16)^2 = 1/64                  | -4*2/64 = -1/8
(1,2)  2.5  1    1    8     | 2.5 > 2; 2.5 < 4 -> B      | (2/2.5)^2 = 0.64, capped 0.5     | 0.5*8 = 4
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.ppp import (
    apply_plan,
    dampening_factor,
    dampening_plan,
    partition,
    ppp_dampen,
    region_sizes,
)

I_F = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 2.5]])
I_N = torch.tensor([[1.0, 1.0, 2.0], [2.0, 1.0, 1.0]])
I_R = torch.tensor([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
THETA = torch.tensor([[3.0, 5.0, 8.0], [4.0, 2.0, 8.0]])
HYPER = {"alpha": 2.0, "tau": 4.0, "lam": 2.0, "lam_max": 0.5, "gamma": 4.0}


def fishers(f: torch.Tensor = I_F) -> tuple[dict[str, torch.Tensor], ...]:
    return {"w": f}, {"w": I_N}, {"w": I_R}


def test_partition_eq5_with_both_boundaries() -> None:
    regions = partition(*fishers(), alpha=2.0, tau=4.0)
    assert regions["w"].dtype == torch.int8
    # S S B / C C B: I_f == alpha * I_r is S, I_f == tau * I_n is C
    assert regions["w"].tolist() == [[0, 0, 1], [2, 2, 1]]
    assert region_sizes(regions) == {"S": 2, "B": 2, "C": 2}


def test_dampening_factor_eq6_with_cap() -> None:
    w = dampening_factor(I_F, I_R, lam=2.0, lam_max=0.5)
    # (2*1/1)^2 = 4 -> 0.5; (2/2)^2 = 1 -> 0.5; 1/4; 1/4; 1/64; 0.64 -> 0.5
    assert w.tolist() == [[0.5, 0.5, 0.25], [0.25, 1 / 64, 0.5]]


def test_dampening_factor_eps_keeps_zero_forget_fisher_finite() -> None:
    w = dampening_factor(torch.tensor([0.0, 0.0]), torch.tensor([0.0, 3.0]), lam=1.0, lam_max=7.0)
    assert w.tolist() == [0.0, 7.0]  # 0 / eps = 0; 3 / eps overflows and is capped at lambda_max
    w = dampening_factor(torch.tensor([2.0]), torch.tensor([1.0]), lam=1.0, lam_max=7.0, eps=2.0)
    assert w.tolist() == [1 / 16]  # (1 / (2 + 2))^2


def test_ppp_dampen_eq7_values() -> None:
    theta = THETA.clone()
    sizes = ppp_dampen({"w": theta}, *fishers(), **HYPER)
    assert sizes == {"w": {"S": 2, "B": 2, "C": 2}}
    assert theta.tolist() == [[3.0, 5.0, 2.0], [-4.0, -0.125, 4.0]]


def test_core_sign_plus_one_is_the_no_inversion_ablation() -> None:
    theta = THETA.clone()
    ppp_dampen({"w": theta}, *fishers(), **HYPER, core_sign=1.0)
    assert theta.tolist() == [[3.0, 5.0, 2.0], [4.0, 0.125, 4.0]]


def test_all_zero_forget_fisher_changes_nothing() -> None:
    theta = THETA.clone()
    sizes = ppp_dampen({"w": theta}, *fishers(torch.zeros(2, 3)), **HYPER)
    assert sizes == {"w": {"S": 6, "B": 0, "C": 0}}
    assert torch.equal(theta, THETA)


def test_module_input_and_untouched_parameters() -> None:
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(THETA)
    bias = layer.bias.detach().clone()
    ppp_dampen(layer, {"weight": I_F}, {"weight": I_N}, {"weight": I_R}, **HYPER)
    assert layer.weight.tolist() == [[3.0, 5.0, 2.0], [-4.0, -0.125, 4.0]]
    assert torch.equal(layer.bias, bias)  # no Fisher entry: left alone


def test_mismatched_fishers_are_named() -> None:
    with pytest.raises(CrossforgetError, match="neighbour Fisher I_n has no entry for 'w'"):
        ppp_dampen({"w": THETA.clone()}, {"w": I_F}, {}, {"w": I_R}, **HYPER)
    with pytest.raises(CrossforgetError, match="retain Fisher I_r of 'w' has shape"):
        ppp_dampen({"w": THETA.clone()}, {"w": I_F}, {"w": I_N}, {"w": I_R[0]}, **HYPER)
    with pytest.raises(CrossforgetError, match="does not have"):
        ppp_dampen({"v": THETA.clone()}, *fishers(), **HYPER)


def test_non_finite_fisher_is_named() -> None:
    bad = I_F.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(CrossforgetError, match="forget Fisher I_f of parameter 'w' contains NaN or Inf"):
        partition(*fishers(bad), alpha=2.0, tau=4.0)
    with pytest.raises(CrossforgetError, match="'w' contains NaN or Inf"):
        ppp_dampen({"w": THETA.clone()}, *fishers(bad), **HYPER)


@pytest.mark.parametrize(
    "change", [{"alpha": -1.0}, {"tau": -1.0}, {"gamma": -1.0}, {"lam_max": -1.0}, {"core_sign": 0.5}]
)
def test_bad_hyperparameters(change: dict) -> None:
    with pytest.raises(CrossforgetError):
        ppp_dampen({"w": THETA.clone()}, *fishers(), **{**HYPER, **change})


def test_per_class_thresholds_dampen_an_entry_any_class_needs() -> None:
    """Two forget classes split I_F (their maximum); I_R as above. Per-class critical alphas I_f^c / I_r:

    class 0: [[1, 0.5, 4], [0.5, 16, 1]]; class 1: [[0.5, 2, 1], [4, 2, 2.5]].
    Thresholds (3, 10): (0,2) 4 > 3 and (1,1) 16 > 3 leave S (class 0); class 1 stays under 10.
    Thresholds (0.75, 100): everything class 0 exceeds 0.75 on leaves S, (1,2) included although
    class 1 serves it more (2.5 vs 1): any class's need counts, not the strongest class's.
    """
    class_0 = torch.tensor([[1.0, 0.5, 4.0], [1.0, 16.0, 1.0]])
    class_1 = I_F.clone()
    class_1[0, 0], class_1[0, 2], class_1[1, 1] = 0.5, 1.0, 2.0
    assert torch.equal(torch.maximum(class_0, class_1), I_F)
    f, n, r = fishers()
    plans = dampening_plan(f, n, r, 4.0, 2.0, 0.5, 4.0, class_fishers=[{"w": class_0}, {"w": class_1}])
    plan = plans["w"]
    assert plan.keeps((3.0, 10.0)).tolist() == [[True, True, False], [True, False, True]]
    assert plan.keeps((0.75, 100.0)).tolist() == [[False, True, False], [True, False, False]]
    for alpha in (1.5, 2.0, 3.0, 20.0):  # equal thresholds select exactly what one alpha does
        assert torch.equal(plan.keeps((alpha, alpha)), plan.keeps(alpha))
    param = {"w": THETA.clone()}
    sizes = apply_plan(param, {"w": THETA}, plans, (3.0, 10.0))
    assert sizes["w"] == {"S": 4, "B": 1, "C": 1}
    # (0,2) is B: 8 * 1/4 = 2; (1,1) is C: -4 * 2 / 64 = -1/8; the rest unchanged.
    assert param["w"].tolist() == [[3.0, 5.0, 2.0], [4.0, -0.125, 8.0]]
    single = dampening_plan(f, n, r, 4.0, 2.0, 0.5, 4.0)["w"]
    assert single.class_critical is None
    with pytest.raises(CrossforgetError, match="per-class thresholds"):
        single.keeps((1.0, 2.0))
    with pytest.raises(CrossforgetError, match="3 thresholds for 2"):
        plan.keeps((1.0, 2.0, 3.0))
