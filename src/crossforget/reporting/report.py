"""One report from many result folders: Markdown and a static HTML page with tables and figures.

Result folders are recognised by what they hold: ``results.json`` (demo/Table 2, Table 1, sweeps),
``best.json`` (tune) and density-plot sidecars (JSON with ``"kind": "density"``). Tables come from the
CSV files the runners wrote beside their JSON, so the report shows exactly the published numbers.
Figures are copied next to the report; the HTML page loads nothing from elsewhere.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_text
from crossforget.metrics.keys import FORGET_ACC
from crossforget.reporting.tables import format_cell, markdown_safe, markdown_table

KIND_TITLES = {
    "table2": "Retrieval unlearning (Table 2)",
    "table1": "Classification unlearning (Table 1)",
    "sweep-classes": "Multi-class forgetting (Fig. 3)",
    "sweep-samples": "Forget sample sizes (Fig. 4)",
    "tune": "Hyperparameter search",
    "density": "Feature densities (Fig. 1)",
    "results": "Results",
}
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#eee}"
    "img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}"
    "code{background:#f4f4f4;padding:0 0.2em}"
)


@dataclass
class Found:
    """One result: its kind, folder, the JSON it was recognised by and its payload."""

    kind: str
    folder: Path
    source: Path
    payload: dict


@dataclass
class Block:
    """A piece of the report: heading, paragraph, table or figure (rendered to Markdown and to HTML)."""

    kind: str
    text: str = ""
    level: int = 2
    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    image: str = ""


def classify(path: Path, payload: dict) -> str | None:
    """The kind of result a JSON file holds, or None when it is not one."""
    if not isinstance(payload, dict):
        return None
    if path.name == "best.json" and "params" in payload and "method" in payload:
        return "tune"
    if payload.get("kind") == "density":
        return "density"
    if path.name != "results.json":
        return None
    if payload.get("sweep") in ("classes", "samples"):
        return f"sweep-{payload['sweep']}"
    if "delta" in payload and "summary" in payload:
        return "table2"
    summary = payload.get("summary")
    if isinstance(summary, dict) and any(isinstance(v, dict) and FORGET_ACC in v for v in summary.values()):
        return "table1"
    return "results"


def find_results(roots: Sequence[Path], exclude: Path | None = None) -> list[Found]:
    """Every recognised result under ``roots`` (sorted by path); unreadable JSON is skipped."""
    if not roots:
        raise CrossforgetError("give at least one folder of results, e.g. crossforget report runs/")
    found: list[Found] = []
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            raise CrossforgetError(f"{root} is not a folder; give folders that hold result folders")
        for path in sorted(root.rglob("*.json")):
            resolved = path.resolve()
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            inside_out = exclude is not None and exclude.resolve() in resolved.parents
            if resolved in seen or hidden or inside_out:
                continue
            seen.add(resolved)
            try:
                payload = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                continue
            kind = classify(path, payload)
            if kind is not None:
                found.append(Found(kind, path.parent, path, payload))
    if not found:
        raise CrossforgetError(
            f"no results found under {', '.join(map(str, roots))} (looked for results.json, best.json and "
            "density-plot JSON)"
        )
    return found


def read_csv(path: Path) -> tuple[list[str], list[list]]:
    """Header and rows; numbers become int or float so the report rounds them like the runners do."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return (rows[0], [[_number(cell) for cell in row] for row in rows[1:]]) if rows else ([], [])


def _number(cell: str) -> object:
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def _markdown_title(folder: Path, stem: str) -> str | None:
    md = folder / f"{stem}.md"
    if md.is_file():
        first = md.read_text().splitlines()[:1]
        if first and first[0].startswith("# "):
            return first[0][2:].strip()
    return None


def _environment(payload: dict) -> str:
    env = payload.get("environment") or {}
    parts = [f"{k} {env[k]}" for k in ("crossforget", "torch", "numpy", "python") if k in env]
    return "Versions: " + ", ".join(parts) + "." if parts else ""


def section(found: Found, label: str, images: list[tuple[Path, str]]) -> list[Block]:
    """The blocks of one result; figures to copy are appended to ``images`` as (source, name)."""
    folder, payload = found.folder, found.payload
    stem = found.source.stem
    title = _markdown_title(folder, "tuning" if found.kind == "tune" else stem) or payload.get("title")
    blocks = [Block("heading", f"{KIND_TITLES[found.kind]}: {label}", level=2)]
    if title:
        blocks.append(Block("paragraph", str(title).replace("\n", " ")))
    blocks.append(Block("paragraph", f"Source: `{found.source}`"))
    if found.kind == "tune":
        blocks += _tune_blocks(payload)
    elif found.kind == "density":
        blocks += _density_blocks(payload)
    if found.kind != "tune" and (folder / "results.csv").is_file():
        columns, rows = read_csv(folder / "results.csv")
        blocks.append(Block("table", columns=columns, rows=rows))
    pictures = [folder / f"{stem}.png"] if found.kind == "density" else sorted(folder.glob("*.png"))
    for picture in pictures:
        if picture.is_file():
            name = f"{len(images) + 1:02d}-{picture.name}"
            images.append((picture, name))
            blocks.append(Block("image", text=f"{label}: {picture.name}", image=f"figures/{name}"))
    environment = _environment(payload)
    if environment:
        blocks.append(Block("paragraph", environment))
    return blocks


def _tune_blocks(payload: dict) -> list[Block]:
    delta = payload.get("delta") or {}
    text = (
        f"Method {str(payload['method']).upper()}, study `{payload.get('study')}` "
        f"in `{payload.get('storage')}`: "
        f"best objective {format_cell(payload.get('objective'), 3)} after {payload.get('trials')} trials"
    )
    if delta.get("forget") is not None:
        text += f" (|Δ| D_f {delta['forget']:.3f}, |Δ| D_r {delta['retain']:.3f}, validation split)"
    rows = [[k, format_cell(v, 4)] for k, v in payload["params"].items()]
    return [Block("paragraph", text + "."), Block("table", columns=["option", "value"], rows=rows)]


def _density_blocks(payload: dict) -> list[Block]:
    samples = payload.get("samples", {})
    rows = [[k, v] for k, v in samples.items()]
    forget, neighbours = ", ".join(payload.get("forget", [])), ", ".join(payload.get("neighbours", []))
    info = f"Forget: {forget}; neighbours (k={payload.get('k')}): {neighbours}."
    return [Block("paragraph", info), Block("table", columns=["group", "samples"], rows=rows)]


def overview(found: list[Found], labels: list[str], method_label: Callable[[str], str]) -> list[Block]:
    """Headline numbers side by side: |Delta| rows of Table 2 runs and tuned objectives."""
    blocks: list[Block] = []
    rows = []
    for item, label in zip(found, labels, strict=True):
        if item.kind == "table2":
            for method, delta in item.payload.get("delta", {}).items():
                if method not in ("original", "retrain"):
                    rows.append([label, method_label(method), delta["forget"], delta["retain"]])
    if rows:
        blocks.append(Block("heading", "|Δ| on the query set (Table 2 runs; lower is better)", level=2))
        blocks.append(Block("table", columns=["result", "method", "|Δ| D_f", "|Δ| D_r"], rows=rows))
    tuned = [(item, label) for item, label in zip(found, labels, strict=True) if item.kind == "tune"]
    if tuned:
        blocks.append(Block("heading", "Tuned settings (validation split; lower is better)", level=2))
        tune_rows = []
        for item, label in tuned:
            p = item.payload
            delta = p.get("delta") or {}
            forget = ", ".join(p.get("setup", {}).get("forget", []))
            tune_rows.append(
                [
                    label,
                    method_label(p["method"]),
                    forget,
                    p.get("trials"),
                    p.get("objective"),
                    delta.get("forget", ""),
                    delta.get("retain", ""),
                ]
            )
        columns = ["result", "method", "forget", "trials", "objective", "|Δ| D_f", "|Δ| D_r"]
        blocks.append(Block("table", columns=columns, rows=tune_rows))
    return blocks


def build_report(
    found: list[Found], title: str, method_label: Callable[[str], str] = str
) -> tuple[list[Block], list[tuple[Path, str]]]:
    """All blocks of the report and the figures it needs; ``method_label``: a method name's column label."""
    images: list[tuple[Path, str]] = []
    blocks = [Block("heading", title, level=1)]
    counts = ", ".join(
        f"{sum(f.kind == k for f in found)} × {KIND_TITLES[k]}"
        for k in KIND_TITLES
        if any(f.kind == k for f in found)
    )
    blocks.append(Block("paragraph", f"{len(found)} result(s): {counts}."))
    labels = _labels(found)
    blocks += overview(found, labels, method_label)
    for item, label in zip(found, labels, strict=True):
        blocks += section(item, label, images)
    return blocks, images


def _labels(found: list[Found]) -> list[str]:
    """Each result's folder relative to the folder all of them share (density plots add their stem)."""
    folders = [f.folder.resolve() for f in found]
    base = Path(os.path.commonpath(folders))
    if len(set(folders)) == 1:
        base = base.parent
    labels = []
    for item, folder in zip(found, folders, strict=True):
        label = folder.relative_to(base)
        labels.append(str(label / item.source.stem if item.kind == "density" else label))
    return labels


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if block.kind == "heading":
            parts.append(f"{'#' * block.level} {block.text}\n")
        elif block.kind == "paragraph":
            parts.append(block.text + "\n")
        elif block.kind == "table":
            parts.append(markdown_table(*markdown_safe(block.columns, block.rows)))
        elif block.kind == "image":
            parts.append(f"![{block.text}]({block.image})\n")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """HTML-escaped text with `code` spans kept."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for block in blocks:
        if block.kind == "heading":
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif block.kind == "paragraph":
            body.append(f"<p>{_inline(block.text)}</p>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in block.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block.kind == "image":
            alt = html.escape(block.text)
            body.append(
                f'<figure><img src="{html.escape(block.image)}" alt="{alt}">'
                f"<figcaption>{alt}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(out: Path, blocks: list[Block], images: list[tuple[Path, str]], title: str) -> None:
    """report.md, report.html and figures/ into ``out``."""
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for source, name in images:
        shutil.copyfile(source, out / "figures" / name)
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, title))
