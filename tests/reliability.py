"""Helpers of the reliability tests: run the CLI on a bad input and check that it did no harm."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from crossforget.cli import main


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (a file root digests itself) by path; folders (empty ones
    and hidden temporary ones too) appear as "folder"."""
    digests = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            digests[str(path)] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def run_cli(argv: Sequence[str]) -> int:
    """``main(argv)``; argparse's own exits count as return codes."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def assert_clean_error(
    argv: Sequence[str],
    capsys: pytest.CaptureFixture[str],
    watched: Sequence[Path],
    message: str | None = None,
    before_work: bool = True,
) -> str:
    """The command exits 2 with one ``error:`` line (``message`` in it), and no file under ``watched``
    was changed, added or removed (inputs keep their sha256, nothing is written).

    ``before_work``: the error is all it printed (it failed before loading data or training); else
    progress lines may come first and the error is the last line.
    """
    before = tree_digest(*watched)
    capsys.readouterr()
    code = run_cli(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"exit {code} for {list(map(str, argv))}: {err[-2000:]}"
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
    if before_work:
        assert len(lines) == 1, err
    err = lines[-1]
    if message is not None:
        assert message in err, err
    assert tree_digest(*watched) == before, f"files changed by {list(map(str, argv))}"
    return err


JSONL_CLASSES = ["dog", "cat", "person", "boat"]


def make_jsonl(root: Path, items: int = 48, size: int = 16) -> Path:
    """A small bring-your-own dataset: ``items`` PNGs whose colour follows their labels, captions that
    name the labels, a classes.txt (the fixed class order) and pairs.jsonl."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(items):
        labels = sorted({JSONL_CLASSES[i % 4], JSONL_CLASSES[int(rng.integers(4))]})
        colour = [60 * JSONL_CLASSES.index(labels[0]) + 20, 40 * len(labels), int(rng.integers(256))]
        pixels = np.clip(rng.normal(colour, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "img" / f"{i:03d}.png")
        caption = "a photo of " + " and ".join(labels)
        lines.append(json.dumps({"image": f"img/{i:03d}.png", "caption": caption, "labels": labels}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(JSONL_CLASSES) + "\n")
    return root


def jsonl_train_args(root: Path) -> list[str]:
    """Flags of a one-epoch 16-bit training run on ``make_jsonl`` data (a few seconds)."""
    return ["--dataset", "jsonl", "--data-root", str(root), "--num-query", "8", "--num-train", "36"]
