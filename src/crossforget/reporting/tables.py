"""Result tables in the three formats every command writes: JSON (machines), CSV, Markdown (people)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crossforget.core.io import atomic_write_json, atomic_write_text, may_write


def format_cell(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    # a literal "|" (as in the |Δ| row) would split the cell: escape it
    lines += ["| " + " | ".join(format_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[("" if isinstance(v, float) and math.isnan(v) else v) for v in row] for row in rows])
    return buffer.getvalue()


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], console: Console | None = None
) -> None:
    table = Table(title=title, header_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(format_cell(v) for v in row))
    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 220)  # logs and pipes: never truncate numbers
    console.print(table)


def markdown_safe(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> tuple[list[str], list[list]]:
    """Headers with ``|`` escaped (e.g. ``|Δ| D_f``); ``markdown_table`` escapes the cells itself."""
    return [c.replace("|", "\\|") for c in columns], [list(row) for row in rows]


def write_results(
    out_dir: Path,
    stem: str,
    payload: dict | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    title: str,
    notes: str = "",
    console: Console | None = None,
) -> dict[str, Path]:
    """Write ``stem``.json (unless ``payload`` is None) / .csv / .md atomically, the one result writer.

    The Markdown file is the title, the table and ``notes``; ``console``: print the table there first.
    """
    if console is not None:
        print_table(title, columns, rows, console)
    if may_write(out_dir):  # under torchrun rank 0 alone writes
        out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md"}
    if payload is None:
        del paths["json"]
    else:
        atomic_write_json(paths["json"], payload)
    atomic_write_text(paths["csv"], csv_table(columns, rows))
    atomic_write_text(paths["md"], f"# {title}\n\n" + markdown_table(*markdown_safe(columns, rows)) + notes)
    return paths
