"""Mean, sample std and Student-t intervals over seeds, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.engine.statistics import format_summary, summarise


def test_three_values_by_hand():
    s = summarise([1.0, 2.0, 3.0])
    assert s.mean == pytest.approx(2.0)
    assert s.std == pytest.approx(1.0)  # sqrt(((1-2)^2 + 0 + (3-2)^2) / 2)
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * std / sqrt(n)
    assert s.ci_low == pytest.approx(2.0 - half)
    assert s.ci_high == pytest.approx(2.0 + half)
    assert s.n == 3 and s.values == (1.0, 2.0, 3.0)


def test_other_confidence_uses_its_own_quantile():
    s = summarise([0.0, 1.0], confidence=0.9)
    # mean 0.5, std sqrt(0.5), t_{0.95, 1} = 6.313751514675041
    half = 6.313751514675041 * math.sqrt(0.5) / math.sqrt(2)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


def test_single_value_has_no_spread():
    s = summarise([0.7])
    assert s.mean == 0.7 and s.n == 1
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)
    assert format_summary(s) == "0.70"


def test_nan_values_are_left_out_but_kept_on_record():
    s = summarise([1.0, float("nan"), 3.0])
    assert s.n == 2 and s.mean == pytest.approx(2.0)
    assert s.std == pytest.approx(math.sqrt(2.0))
    empty = summarise([float("nan")])
    assert empty.n == 0 and format_summary(empty) == "n/a"


def test_scaled_and_formatted():
    s = summarise([0.1, 0.3]).scaled(100)
    assert s.mean == pytest.approx(20.0)
    assert s.std == pytest.approx(100 * math.sqrt(0.02))
    assert s.values == pytest.approx((10.0, 30.0))
    assert format_summary(s) == "20.00 ± 14.14"
    assert s.to_dict()["values"] == pytest.approx([10.0, 30.0])


def test_bad_confidence_is_an_error():
    with pytest.raises(CrossforgetError, match="confidence"):
        summarise([1.0, 2.0], confidence=1.0)
