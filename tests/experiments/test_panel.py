"""The request panel: worst-seed |Δ| by hand, and `sweep requests` end to end on the tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossforget.cli import main
from crossforget.data.scenes.vocabulary import CLASS_NAMES
from crossforget.experiments.panel import PANELS, panel_sets, panel_summary, seed_deltas
from tests.experiments.test_sweeps import FAST, assert_picture


def _scores(retain: float, forget: float) -> dict:
    return {d: {"retain": retain, "forget_label": forget, "forget_any": 0.0} for d in ("I2T", "T2I")}


def test_seed_deltas_and_the_worst_seed_by_hand():
    original = {"32": {"0": _scores(0.80, 0.40)}}
    retrain = {"32": {"0": _scores(0.79, 0.08)}}
    method = {"32": {"0": _scores(0.79, 0.10), "1": _scores(0.50, 0.09)}}
    deltas = seed_deltas(method, original, retrain)
    assert deltas["retain"] == pytest.approx([1.0, 30.0])
    assert deltas["forget"] == pytest.approx([2.0, 1.0])
    results = {
        "points": [{"label": "dog", "forget": ["dog"]}],
        "per_seed": {"dog": {"original": original, "retrain": retrain, "ppp": method}},
        "diagnostics": {"dog": {"ppp": {"32": {"0": {"regions": {"B": 3, "C": 1}}, "1": {"selected": 5}}}}},
    }
    summary = panel_summary(results)
    entry = summary["per_request"]["dog"]["ppp"]
    assert entry["worst"] == pytest.approx({"forget": 2.0, "retain": 30.0})
    assert entry["mean"] == pytest.approx({"forget": 1.5, "retain": 15.5})
    assert entry["dampened"] == [{"B": 3, "C": 1}, {"selected": 5}]
    overall = summary["overall"]["ppp"]["retain"]
    assert overall["mean_of_worst"] == pytest.approx(30.0) and overall["worst"] == pytest.approx(30.0)
    assert overall["worst_request"] == "dog"


def test_named_panels_fit_the_built_in_classes_with_stand_ins():
    sets = panel_sets(PANELS["default"], CLASS_NAMES)
    assert len(sets) == 10 and len(sets[-1]) == 8 and "chair" in sets[-1] and "bench" not in sets[-1]
    assert all(name in CLASS_NAMES for names in sets for name in names)


def test_sweep_requests_end_to_end(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "panel"
    code = main(
        ["sweep", "requests", "--checkpoint", str(tiny_checkpoint), "--requests", "dog", "dog,cat",
         "--methods", "ppp", "ssd", "--seeds", "0", "1", "--score-on", "validation", "--cache",
         str(tmp_path / "cache"), "--out", str(out), *FAST]
    )  # fmt: skip
    assert code == 0
    panel = json.loads((out / "panel.json").read_text())
    assert set(panel["per_request"]) == {"dog", "dog+cat"}
    assert panel["config"]["score_on"] == "validation"
    for entry in panel["per_request"].values():
        for method in ("ppp", "ssd"):
            deltas = entry[method]["delta_per_seed"]
            assert len(deltas["retain"]) == 2 and len(deltas["forget"]) == 2
            assert entry[method]["worst"]["retain"] == max(deltas["retain"])
        assert len(entry["ppp"]["guard"]) == 2
    assert "worst request" in (out / "panel.md").read_text()
    assert_picture(out / "panel.png")
