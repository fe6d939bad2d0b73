"""The layering of docs/architecture.md, checked on the source: every crossforget import points down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "crossforget"
BELOW_ENGINE = {"core", "data", "models", "losses", "metrics", "unlearning"}
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"core"},
    "losses": {"core"},
    "metrics": {"core"},
    "models": {"core", "data", "losses"},
    "unlearning": {"core", "data", "models", "losses", "metrics"},
    "engine": BELOW_ENGINE,
    "tasks": BELOW_ENGINE | {"engine"},
    "reporting": {"core", "metrics"},
    "experiments": BELOW_ENGINE | {"engine", "tasks", "reporting"},
    "index": BELOW_ENGINE | {"engine", "tasks", "reporting"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crossforget."):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("crossforget.")]
    return found


def upward_imports(src: Path = SRC) -> list[str]:
    """``file:line package -> module`` for every import a package's rule does not allow."""
    bad = []
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).parts
        if len(parts) < 2 or parts[0] not in ALLOWED:
            continue
        for line, module in _imports(path):
            target = module.split(".")[1]
            if target != parts[0] and target not in ALLOWED[parts[0]]:
                bad.append(f"{path.relative_to(src)}:{line} {parts[0]} -> {module}")
    return bad


def test_every_package_has_a_rule():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - set(ALLOWED) == {"cli"}  # the command line may import everything


def test_imports_point_down_the_data_flow():
    assert upward_imports() == []


def test_an_upward_import_is_caught(tmp_path):
    (tmp_path / "metrics").mkdir(parents=True)
    (tmp_path / "metrics" / "bad.py").write_text("from crossforget.experiments.table2 import run_table2\n")
    assert upward_imports(tmp_path) == ["metrics/bad.py:1 metrics -> crossforget.experiments.table2"]


@pytest.mark.parametrize("command", sorted(p.stem for p in (SRC / "cli").glob("*.py") if p.stem != "common"))
def test_no_command_imports_another(command):
    others = {
        f"crossforget.cli.{p.stem}" for p in (SRC / "cli").glob("*.py") if p.stem not in {command, "common"}
    }
    imported = {module for _, module in _imports(SRC / "cli" / f"{command}.py")}
    assert imported & others == set()
