"""scripts/numbers_digest.py: timings and cache flags do not count, any result value does."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "numbers_digest.py"


def _module():
    spec = importlib.util.spec_from_file_location("numbers_digest", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, value: dict) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_run_descriptions_do_not_count_but_results_do(tmp_path):
    digest = _module()
    base = {
        "summary": {"ppp": [81.5, 0.25], "empty": float("nan")},
        "timings": {"ppp": 3.1},
        "run_timings": {"ppp": 3.0},
        "environment": {"torch": "2"},
    }
    slower = {**base, "timings": {"ppp": 9.9}, "run_timings": {"ppp": 9.8}, "environment": {"torch": "3"}}
    changed = {**base, "summary": {"ppp": [81.5, 0.26], "empty": float("nan")}}
    a, b, c = (_write(tmp_path / f"{n}.json", v) for n, v in (("a", base), ("b", slower), ("c", changed)))
    assert digest.digest(a) == digest.digest(b)
    assert digest.digest(a) != digest.digest(c)
    assert digest.differences(a, b) == []
    assert digest.differences(a, c) == [".summary.ppp[1]: 0.25 != 0.26"]
    assert digest.main(["--diff", str(a), str(c)]) == 1
