"""Results trees and the retrieval summaries: seed summaries, |Δ| and paired differences by hand."""

from __future__ import annotations

import math

import pytest

from crossforget.engine.results import paired_difference, seed_summary, summarise

T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student t quantiles, two-sided 95%
DIRECTIONS = ("I2T", "T2I")


def _scores(retain: float, forget: float, any_label: float = 0.5) -> dict:
    return {d: {"retain": retain, "forget_label": forget, "forget_any": any_label} for d in DIRECTIONS}


def test_seed_summary_by_hand():
    s = seed_summary([1.0, 2.0, 3.0])
    half = T_975[2] * 1.0 / math.sqrt(3)
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0) and s["n"] == 3
    assert (s["ci_low"], s["ci_high"]) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    single = seed_summary([7.5])
    assert single == {"mean": 7.5, "std": 0.0, "n": 1, "ci_low": None, "ci_high": None}


def test_table2_summary_keeps_its_keys_and_adds_the_interval():
    scores = {d: {"retain": 0.5, "forget_label": 0.1, "forget_any": 0.2} for d in ("I2T", "T2I")}
    other = {d: {"retain": 0.7, "forget_label": 0.3, "forget_any": 0.2} for d in ("I2T", "T2I")}
    summary = summarise({"ppp": {"16": {"0": scores, "1": other}}, "retrain": {"16": {"0": scores}}})
    entry = summary["ppp"]["16-I2T"]["retain"]
    assert set(entry) == {"mean", "std", "n", "ci_low", "ci_high"}
    half = T_975[1] * entry["std"] / math.sqrt(2)
    assert entry["mean"] == pytest.approx(60.0) and entry["std"] == pytest.approx(100 * math.sqrt(0.02))
    assert (entry["ci_low"], entry["ci_high"]) == (pytest.approx(60.0 - half), pytest.approx(60.0 + half))
    assert summary["retrain"]["16-T2I"]["forget_label"] == {
        "mean": pytest.approx(10.0),
        "std": 0.0,
        "n": 1,
        "ci_low": None,
        "ci_high": None,
    }


def test_paired_difference_by_hand():
    per_seed = {
        "original": {"16": {"0": _scores(0.80, 0.40)}},
        "retrain": {"16": {"0": _scores(0.80, 0.10)}},
        "ppp": {"16": {"0": _scores(0.79, 0.12), "1": _scores(0.80, 0.11)}},
        # seed 2 has no PPP partner and must be left out
        "ssd": {"16": {"0": _scores(0.76, 0.15), "1": _scores(0.78, 0.18), "2": _scores(0.0, 0.0)}},
    }
    paired = paired_difference(per_seed, "ppp", "ssd")
    assert paired["seeds"] == [0, 1]
    retain = paired["settings"]["16-I2T"]["retain"]
    # differences in points: seed 0: 79 - 76 = 3, seed 1: 80 - 78 = 2 -> mean 2.5, std sqrt(0.5)
    half = T_975[1] * math.sqrt(0.5) / math.sqrt(2)
    assert retain["mean"] == pytest.approx(2.5) and retain["std"] == pytest.approx(math.sqrt(0.5))
    assert retain["n"] == 2
    assert (retain["ci_low"], retain["ci_high"]) == (pytest.approx(2.5 - half), pytest.approx(2.5 + half))
    forget = paired["settings"]["16-T2I"]["forget_label"]
    assert forget["mean"] == pytest.approx(-5.0)  # (12 - 15) and (11 - 18) -> -3, -7
    # per-seed |Delta| forget: PPP |12-10| = 2, |11-10| = 1; SSD 5, 8 -> differences -3, -7
    assert paired["delta"]["forget"]["mean"] == pytest.approx(-5.0)
    assert paired["delta"]["forget"]["std"] == pytest.approx(math.sqrt(8.0))
    # per-seed |Delta| retain: PPP 1, 0; SSD 4, 2 -> -3, -2
    assert paired["delta"]["retain"]["mean"] == pytest.approx(-2.5)
    without_references = paired_difference({k: per_seed[k] for k in ("ppp", "ssd")}, "ppp", "ssd")
    assert "delta" not in without_references and without_references["settings"] == paired["settings"]
