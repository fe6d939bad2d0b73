"""``crossforget report``: discovery, Markdown and static HTML with tables and copied figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from crossforget.cli import main  # noqa: E402
from crossforget.core.errors import CrossforgetError  # noqa: E402
from crossforget.reporting.report import build_report, classify, find_results, to_html, to_markdown  # noqa: E402
from tests.experiments.test_sweeps import FAST  # noqa: E402


def _png(path: Path, text: str) -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title(text)
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture
def results_tree(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    demo = root / "demo"
    demo.mkdir(parents=True)
    payload = {
        "summary": {"ppp": {}},
        "delta": {
            "ssd": {"forget": 6.64, "retain": 2.07},
            "ppp": {"forget": 4.61, "retain": 0.66},
            "original": {"forget": 0.5, "retain": 0.0},
        },
        "environment": {"crossforget": "0.1.0", "torch": "2.x"},
    }
    (demo / "results.json").write_text(json.dumps(payload))
    (demo / "results.csv").write_text("Bits,SSD D_f,PPP D_f\n16-I2T,8.19,10.9\n|Δ|,6.64,4.61\n")
    (demo / "results.md").write_text("# Retrieval <b>mAP</b> forgetting dog\n\n...")
    _png(demo / "results.png", "demo")
    tune = root / "tune-ppp"
    tune.mkdir()
    best = {
        "method": "ppp",
        "params": {"alpha": 12.5, "k": 3},
        "objective": 1.25,
        "trials": 20,
        "study": "s",
        "storage": "sqlite:///x.db",
        "delta": {"forget": 1.0, "retain": 0.25},
        "setup": {"forget": ["dog"]},
    }
    (tune / "best.json").write_text(json.dumps(best))
    _png(tune / "history.png", "history")
    density = {
        "kind": "density",
        "title": "t",
        "forget": ["dog"],
        "neighbours": ["cat"],
        "k": 1,
        "samples": {"forget": 3, "neighbour": 4, "other": 5},
    }
    (root / "fig.json").write_text(json.dumps(density))
    _png(root / "fig.png", "density")
    _png(root / "stray.png", "not part of any result")
    (root / "broken.json").write_text("{not json")
    (root / "other.json").write_text(json.dumps({"hello": 1}))
    hidden = root / ".tmp-run"
    hidden.mkdir()
    (hidden / "results.json").write_text(json.dumps(payload))
    return root


def test_results_are_found_by_kind(results_tree: Path):
    found = find_results([results_tree])
    assert sorted((f.kind, f.folder.name) for f in found) == [
        ("density", "runs"),
        ("table2", "demo"),
        ("tune", "tune-ppp"),
    ]
    assert classify(Path("results.json"), {"sweep": "classes"}) == "sweep-classes"
    assert classify(Path("results.json"), {"summary": {"ppp": {"forget_acc": {}}}}) == "table1"
    assert classify(Path("other.json"), {"summary": {}}) is None


def test_markdown_and_html(results_tree: Path, tmp_path: Path):
    out = tmp_path / "report"
    assert main(["report", str(results_tree), "--out", str(out), "--title", "All <runs>"]) == 0
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert markdown.startswith("# All <runs>")
    assert "| demo | PPP | 4.61 | 0.66 |" in markdown and "| demo | Original |" not in markdown
    assert "| tune-ppp | PPP | dog | 20 | 1.25 | 1.00 | 0.25 |" in markdown
    assert "| \\|Δ\\| | 6.64 | 4.61 |" in markdown  # pipes escaped inside table cells
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", markdown)
    assert len(links) == 3 and all((out / link).is_file() for link in links)
    assert not any("stray" in link for link in links)
    assert (out / links[0]).read_bytes() in {p.read_bytes() for p in results_tree.rglob("*.png")}
    assert "<title>All &lt;runs&gt;</title>" in page and "<b>mAP</b>" not in page
    assert page.count("<table>") == sum(line.startswith("|---") for line in markdown.splitlines()) == 5
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == sorted(links)
    assert not re.search(r"(src|href)=\"(https?:|/)", page)  # nothing loaded from elsewhere
    assert "<th>|Δ| D_f</th>" in page


def test_rerun_skips_its_own_output_and_refuses_a_full_folder(results_tree: Path, capsys):
    out = results_tree / "report"
    assert main(["report", str(results_tree), "--out", str(out)]) == 0
    assert main(["report", str(results_tree), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["report", str(results_tree), "--out", str(out), "--overwrite"]) == 0
    assert len(find_results([results_tree], exclude=out)) == 3


def test_nothing_to_report_is_an_error(tmp_path: Path):
    with pytest.raises(CrossforgetError, match="no results found"):
        find_results([tmp_path])
    with pytest.raises(CrossforgetError, match="is not a folder"):
        find_results([tmp_path / "missing"])


def test_report_of_real_sweep_and_tune_output(tiny_checkpoint: Path, tmp_path: Path):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    common = ["--checkpoint", str(tiny_checkpoint), "--cache", str(cache)]
    assert (
        main(
            [
                "sweep",
                "samples",
                *common,
                "--sizes",
                "4",
                "--seeds",
                "0",
                "1",
                "--out",
                str(runs / "s"),
                *FAST,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "tune",
                "--method",
                "ssd",
                *common,
                "--trials",
                "2",
                "--validation-size",
                "80",
                "--storage",
                f"sqlite:///{tmp_path / 'o.db'}",
                "--out",
                str(runs / "t"),
            ]
        )
        == 0
    )
    found = find_results([runs])
    assert sorted(f.kind for f in found) == ["sweep-samples", "tune"]
    blocks, images = build_report(found, "tiny")
    markdown, page = to_markdown(blocks), to_html(blocks, "tiny")
    assert "Forget sample sizes (Fig. 4): s" in markdown and "Hyperparameter search: t" in markdown
    assert "95% CI" in markdown and "D_r mAP mean" in page
    assert sorted(name.split("-", 1)[1] for _, name in images) == ["history.png", "results.png"]
