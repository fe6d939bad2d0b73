"""The audit log: append-only, hash-chained; every edit, deletion and cut is detected."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.index.audit import AuditLog


def _log(tmp_path: Path, n: int = 4) -> AuditLog:
    log = AuditLog(tmp_path / "audit.sqlite", create=True)
    log.append("build", {"index_after": {"version": "v000000"}})
    for i in range(1, n):
        log.append("forget", {"request": {"classes": [f"c{i}"]}, "index_after": {"version": f"v{i:06d}"}})
    return log


def _tamper(path: Path, sql: str) -> None:
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER records_no_update; DROP TRIGGER records_no_delete; " + sql)
    db.close()


def test_chain_verifies_and_records_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    records = log.records()
    assert [r.seq for r in records] == [0, 1, 2, 3]
    assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:], strict=False))
    assert log.verify() == [] and log.verify(head=records[-1].hash) == []
    assert log.head().body["index_after"]["version"] == "v000003"
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_updates_and_deletes_are_refused(tmp_path: Path) -> None:
    _log(tmp_path)
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    for sql in ("UPDATE records SET body = '{}' WHERE seq = 1", "DELETE FROM records WHERE seq = 3"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("UPDATE records SET body = replace(body, 'c2', 'c9') WHERE seq = 2", "record #2 was altered"),
        ("UPDATE records SET created = '2000-01-01' WHERE seq = 1", "record #1 was altered"),
        ("DELETE FROM records WHERE seq = 1", "record #1 is missing"),
    ],
)
def test_tampering_is_detected(tmp_path: Path, sql: str, message: str) -> None:
    _log(tmp_path)
    _tamper(tmp_path / "audit.sqlite", sql)
    problems = AuditLog(tmp_path / "audit.sqlite").verify()
    assert problems and message in problems[0]


def test_a_cut_tail_is_detected_against_a_kept_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    head = log.head().hash
    _tamper(tmp_path / "audit.sqlite", "DELETE FROM records WHERE seq = 3")
    assert log.verify() == []  # a shorter chain is still a chain...
    assert "head hash" in log.verify(head=head)[0]  # ...but not the one the client kept


def test_a_missing_or_damaged_log_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(CrossforgetError, match="missing"):
        AuditLog(tmp_path / "none.sqlite")
    (tmp_path / "bad.sqlite").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(CrossforgetError, match="damaged|cannot"):
        AuditLog(tmp_path / "bad.sqlite").records()


def test_append_is_atomic_when_the_commit_hook_fails(tmp_path: Path) -> None:
    log = _log(tmp_path, 1)

    def fail() -> None:
        raise RuntimeError("crash inside the transaction")

    with pytest.raises(RuntimeError):
        log.append("forget", {"index_after": {"version": "v000001"}}, before_commit=fail)
    assert [r.seq for r in log.records()] == [0] and log.verify() == []
