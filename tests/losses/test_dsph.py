"""The DSPH loss on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from crossforget.core.errors import CrossforgetError
from crossforget.losses.dsph import DSPHLoss, dsph_margin


def test_margin_table_values_from_the_reference():
    assert dsph_margin(16, 80) == 0.25
    assert dsph_margin(32, 80) == 0.125
    assert dsph_margin(64, 80) == 0.0
    assert dsph_margin(16, 24) == 0.0
    with pytest.raises(CrossforgetError):
        dsph_margin(1000, 80)


def _loss_with(proxies: list[list[float]], margin: float) -> DSPHLoss:
    loss = DSPHLoss(num_classes=len(proxies), bits=2, margin=margin, alpha_reg=0.8)
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor(proxies))
    return loss


def test_proxy_terms_by_hand():
    # Proxies e1=(1,0), e2=(0,1), e3=(-1,0). One sample, label {class 0}.
    # Image code (1,1): cos = (1/sqrt2, 1/sqrt2, -1/sqrt2). Positive: 1 - 1/sqrt2.
    # Negatives (classes 1,2) with m = 0: relu(1/sqrt2) + relu(-1/sqrt2) = 1/sqrt2, over 2 zeros.
    # Text code (1,0): cos = (1, 0, -1): positive 0; negatives relu(0) + relu(-1) = 0.
    loss = _loss_with([[1, 0], [0, 1], [-1, 0]], margin=0.0)
    image = torch.tensor([[1.0, 1.0]])
    text = torch.tensor([[1.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    s = 1 / math.sqrt(2)
    expected = (1 - s) + s / 2 + 0.0
    assert loss.from_codes(image, text, labels).item() == pytest.approx(expected, abs=1e-6)
    assert loss.from_codes(image, text, labels, reduction="none").tolist() == pytest.approx(
        [expected], abs=1e-6
    )


def test_margin_shifts_negative_term():
    loss = _loss_with([[1, 0], [0, 1], [-1, 0]], margin=0.5)
    s = 1 / math.sqrt(2)
    value = loss.from_codes(
        torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0, 0]])
    )
    assert value.item() == pytest.approx((1 - s) + (s - 0.5) / 2, abs=1e-6)


def test_batch_normalises_by_counts_in_the_whole_batch_and_per_sample_by_row():
    # Two samples: labels {0} and {0,1}; codes chosen so that every cos is known.
    loss = _loss_with([[1, 0], [0, 1], [-1, 0]], margin=0.0)
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos rows: (1,0,-1) and (0,1,0)
    labels = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0]])
    # Batch: positives (1-1) + (1-0) + (1-1) = 1 over 3 ones; negatives relu(0)+relu(-1)+relu(0) = 0 over 3.
    batch = loss.from_codes(image, image, labels)  # image and text equal: the proxy part doubles
    # Regulariser: only multi-label samples (sample 2 alone) -> no pair -> 0.
    assert batch.item() == pytest.approx(2 * (1 / 3), abs=1e-6)
    # Per sample: sample 1 has positive 0 (1 one), negatives 0; sample 2: (1 + 0)/2 = 0.5, negative 0.
    per = loss.from_codes(image, image, labels, reduction="none")
    assert per.tolist() == pytest.approx([0.0, 2 * 0.5], abs=1e-6)


def test_per_sample_equals_a_batch_of_one():
    torch.manual_seed(0)
    loss = DSPHLoss(num_classes=5, bits=16)
    image, text = torch.tanh(torch.randn(6, 16)), torch.tanh(torch.randn(6, 16))
    labels = (torch.rand(6, 5) < 0.4).float()
    labels[:, 0] = 1.0
    per = loss.from_codes(image, text, labels, reduction="none")
    for i in range(6):
        alone = loss.from_codes(image[i : i + 1], text[i : i + 1], labels[i : i + 1])
        assert per[i].item() == pytest.approx(alone.item(), abs=1e-6)


def test_regulariser_penalises_similar_codes_of_disjoint_multilabel_samples():
    # Samples 1 and 2 carry two labels each and share none; identical codes -> sim 1 for ii, tt and it.
    loss = _loss_with([[1, 0], [0, 1], [-1, 0], [0, -1]], margin=0.0)
    codes = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 1.0, 1.0]])
    with_reg = loss.from_codes(codes, codes, labels)
    loss.alpha_reg = 0.0
    without = loss.from_codes(codes, codes, labels)
    # ii and tt: the two off-diagonal disjoint pairs have sim 1; it: also the two cross pairs -> 3 terms.
    assert (with_reg - without).item() == pytest.approx(3 * 0.8 * 1.0, abs=1e-6)


def test_regulariser_leaves_out_single_label_samples():
    # Samples 0 and 1 carry two labels each and share none (identical codes: sim 1). Sample 2 carries
    # one label, none shared with sample 1, and an orthogonal code (sim 0 with both): were it counted,
    # the disjoint pairs would be (0,1), (1,0), (1,2), (2,1) and each mean would halve to 0.5.
    loss = _loss_with([[1, 0], [0, 1], [-1, 0], [0, -1]], margin=0.0)
    codes = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 1.0, 1.0], [1.0, 0, 0, 0]])
    with_reg = loss.from_codes(codes, codes, labels)
    loss.alpha_reg = 0.0
    without = loss.from_codes(codes, codes, labels)
    assert (with_reg - without).item() == pytest.approx(3 * 0.8 * 1.0, abs=1e-6)
