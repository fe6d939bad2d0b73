"""No writing command may put its output on, around or inside one of its inputs (issue 11, part 1).

``--overwrite`` replaces the output folder wholesale, so before this check ``unlearn --checkpoint K
--out K --overwrite`` deleted the Original and ``--out K/bits32`` planted a second model inside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.reliability import assert_clean_error


@pytest.fixture(scope="module")
def work(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny checkpoint (K), a jsonl data folder (R), a results folder and a storage file."""
    work = tmp_path_factory.mktemp("outputs")
    shutil.copytree(tiny_checkpoint, work / "K")
    root = work / "R"
    root.mkdir()
    (root / "pairs.jsonl").write_text(json.dumps({"image": "a.png", "caption": "a dog", "labels": ["dog"]}))
    (work / "results" / "sub").mkdir(parents=True)
    (work / "results" / "sub" / "results.json").write_text("{}")
    (work / "db").mkdir()
    (work / "db" / "optuna.db").write_bytes(b"")
    (work / "params.json").write_text(json.dumps({"alpha": 5.0}))
    return work


UNLEARN = ["unlearn", "--forget", "dog", "--method", "ssd"]
CASES = [
    # unlearn: the three damaging cases of the issue, and the planted model without --overwrite
    (UNLEARN + ["--checkpoint", "{K}", "--out", "{K}", "--overwrite"], "is the input --checkpoint"),
    (UNLEARN + ["--checkpoint", "{K}", "--out", "{K}/bits16", "--overwrite"], "lies inside the input"),
    (UNLEARN + ["--checkpoint", "{K}/bits16", "--out", "{K}", "--overwrite"], "contains the input"),
    (UNLEARN + ["--checkpoint", "{K}", "--out", "{K}/bits32"], "lies inside the input --checkpoint"),
    (
        UNLEARN + ["--checkpoint", "{K}", "--params", "{W}/params.json", "--out", "{W}", "--overwrite"],
        "contains",
    ),
    (["train", "--dataset", "jsonl", "--data-root", "{R}", "--out", "{R}", "--overwrite"], "--data-root"),
    (["train", "--bits", "16", "--out", "{K}/bits16/again"], "inside the checkpoint folder"),
    (["evaluate", "--checkpoint", "{K}/bits16", "--forget", "dog", "--out", "{K}/bits16/e"], "lies inside"),
    (["evaluate", "--checkpoint", "{K}/bits16", "--forget", "dog", "--out", "{K}"], "contains"),
    (["demo", "--out", "{W}/results", "--cache", "{W}/results/sub", "--overwrite"], "--cache"),
    (["demo", "--out", "{K}/bits16/demo"], "inside the checkpoint folder"),
    (["sweep", "samples", "--checkpoint", "{K}", "--out", "{K}", "--overwrite"], "is the input"),
    (["sweep", "classes", "--checkpoint", "{K}/bits16", "--out", "{K}", "--overwrite"], "contains"),
    (["tune", "--method", "ppp", "--checkpoint", "{K}", "--out", "{K}", "--overwrite"], "--checkpoint"),
    (
        ["tune", "--method", "ppp", "--checkpoint", "{K}", "--storage", "sqlite:///{W}/db/optuna.db"]
        + ["--out", "{W}/db", "--overwrite"],
        "--storage",
    ),
    (
        ["features", "extract", "--dataset", "jsonl", "--data-root", "{R}", "--out", "{R}/pairs.jsonl"]
        + ["--overwrite"],
        "--data-root",
    ),
    (["plot", "density", "--checkpoint", "{K}", "--out", "{K}/bits16/config.png", "--overwrite"], "inside"),
    (["report", "{W}/results", "--out", "{W}/results", "--overwrite"], "is the input folder"),
    (["report", "{W}/results/sub", "--out", "{W}/results", "--overwrite"], "contains the input folder"),
    (["table1", "--dataset", "imagefolder", "--root", "{R}", "--forget", "dog", "--out", "{R}"], "--root"),
    (["data", "preview", "--dataset", "jsonl", "--data-root", "{R}", "--out", "{R}/p.png"], "lies inside"),
    (["data", "preview", "--out", "{K}/bits16/p.png"], "inside the checkpoint folder"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0][:2]) for c in CASES])
def test_output_may_not_touch_an_input(argv, message, work: Path, capsys) -> None:
    filled = [a.format(K=work / "K", R=work / "R", W=work) for a in argv]
    assert_clean_error(filled, capsys, [work], message)


def test_symlinked_output_is_seen_through(work: Path, tmp_path: Path, capsys) -> None:
    link = tmp_path / "link"
    link.symlink_to(work / "K")
    argv = UNLEARN + ["--checkpoint", str(work / "K"), "--out", str(link), "--overwrite"]
    assert_clean_error(argv, capsys, [work], "is the input --checkpoint")
