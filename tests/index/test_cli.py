"""The index commands' command lines: search and audit output, serve's refusals, light --help."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from crossforget.cli import main


def test_search_json_and_table(tiny_index: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["search", str(tiny_index), "--text", "a dog on a beach", "-k", "4", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["direction"] == "T2I" and answer["exact"] and len(answer["hits"]) == 4
    assert set(answer["hits"][0]) == {"rank", "item", "index", "distance", "labels", "caption"}
    assert main(["search", str(tiny_index), "--text", "a dog on a beach", "-k", "4"]) == 0
    table = capsys.readouterr().out
    assert "T2I top-4 from version v000000 (exact search)" in table
    assert answer["hits"][0]["caption"] in table
    assert main(["search", str(tiny_index), "--text", "a dog", "-k", "0"]) == 2
    assert "-k must be" in capsys.readouterr().err


def test_audit_list_show_verify(index_copy: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", "list", str(index_copy)]) == 0
    listing = capsys.readouterr().out
    assert (
        "build" in listing and "v000000" in listing and listing.strip().splitlines()[-1].startswith("head ")
    )
    assert main(["audit", "show", str(index_copy), "0"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "build" and record["index_after"]["version"] == "v000000"
    assert main(["audit", "show", str(index_copy), "5"]) == 2
    assert "no audit record #5; the log holds records 0..0" in capsys.readouterr().err
    assert main(["audit", "verify", str(index_copy), "--head", record["hash"]]) == 0
    assert "audit log intact: 1 records" in capsys.readouterr().out
    db = sqlite3.connect(index_copy / "audit.sqlite")
    db.executescript(
        "DROP TRIGGER records_no_update; UPDATE records SET body = replace(body, 'v000000', 'v000000 ');"
    )
    db.close()
    assert main(["audit", "verify", str(index_copy)]) == 1
    assert "audit verify FAILED: record #0 was altered" in capsys.readouterr().err


def test_audit_verify_checks_the_serving_files(index_copy: Path, capsys: pytest.CaptureFixture) -> None:
    (index_copy / "versions" / "v000000" / "text.faiss").write_bytes(b"x")
    assert main(["audit", "verify", str(index_copy)]) == 1
    assert "text.faiss is corrupt" in capsys.readouterr().err


def test_serve_refuses_an_open_host_without_a_token(
    tiny_index: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CROSSFORGET_TOKEN", raising=False)
    assert main(["serve", str(tiny_index), "--host", "0.0.0.0"]) == 2
    assert "give --token" in capsys.readouterr().err
    assert main(["serve", str(tiny_index), "--port", "70000"]) == 2
    assert "not a port" in capsys.readouterr().err


def test_index_command_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\nfrom crossforget.cli import build_parser\n"
        "for name in ('index', 'search', 'audit', 'serve'):\n    build_parser(name)\n"
        "print(sorted(m for m in ('torch', 'faiss', 'fastapi', 'uvicorn') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_search_refuses_another_checkpoint(
    tiny_index: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ck = tiny_checkpoint / "bits16"
    assert main(["search", str(tiny_index), "--text", "a dog", "--checkpoint", str(ck)]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.safetensors").write_bytes((ck / "weights.safetensors").read_bytes())
    config = json.loads((ck / "config.json").read_text())
    config["training"]["seed"] = 7
    (other / "config.json").write_text(json.dumps(config))
    assert main(["search", str(tiny_index), "--text", "a dog", "--checkpoint", str(other)]) == 2
    assert "its codes would not be comparable" in capsys.readouterr().err
