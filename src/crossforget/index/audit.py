"""The audit log of a live index: append-only SQLite (WAL), one record per build or forget request.

Each record stores its body as canonical JSON and the SHA-256 of (seq, previous hash, time, kind,
body), so editing, deleting or reordering any record breaks the chain and ``verify`` names the first
broken record. Triggers refuse UPDATE and DELETE, so an ordinary client cannot change history by
accident; a deliberate edit (dropping the triggers) is what the chain detects. Cutting records off the
end leaves a valid shorter chain: compare the head hash with one kept elsewhere (``verify(head=...)``).

The log is also the index's commit point: the serving version is the one named by the last record
(``index_after.version``), so appending a record *is* the atomic version swap, and the serving
version and the log can never disagree (see ``crossforget.index.store``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from crossforget.core.errors import CrossforgetError

FORMAT = "crossforget-audit/1"
GENESIS = "0" * 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    created TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True)
class Record:
    """One audit record as stored."""

    seq: int
    created: str
    kind: str
    body: dict
    prev_hash: str
    hash: str

    def to_dict(self) -> dict:
        return {
            "seq": self.seq,
            "created": self.created,
            "kind": self.kind,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            **self.body,
        }


def canonical_json(body: dict) -> str:
    """The one byte form a body is hashed in (sorted keys, no spaces, ASCII)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def record_hash(seq: int, prev_hash: str, created: str, kind: str, body_text: str) -> str:
    text = f"{seq}\n{prev_hash}\n{created}\n{kind}\n{body_text}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class AuditLog:
    """The log at ``path``; a connection per call, so threads (the HTTP service) can share one object."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise CrossforgetError(
                f"{self.path} is missing; the index folder is incomplete (rebuild it with `index build`)"
            )
        if create:
            with self._connect() as db:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise CrossforgetError(f"cannot open the audit log {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed deletion survives a power cut
            yield db
        except sqlite3.DatabaseError as exc:
            raise CrossforgetError(
                f"the audit log {self.path} cannot be read ({exc}); it is damaged: restore it from a backup"
            ) from None
        finally:
            db.close()

    def append(self, kind: str, body: dict, before_commit: Callable[[], None] | None = None) -> Record:
        """Append one record in one transaction; ``before_commit`` runs inside it (fault injection)."""
        body_text = canonical_json(body)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (0, GENESIS) if row is None else (row[0] + 1, row[1])
                created = utc_now()
                digest = record_hash(seq, prev, created, kind, body_text)
                db.execute(
                    "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                    (seq, created, kind, body_text, prev, digest),
                )
                if before_commit is not None:
                    before_commit()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Record(seq, created, kind, json.loads(body_text), prev, digest)

    def _rows(self, query: str, args: tuple = ()) -> list[tuple]:
        with self._connect() as db:
            return db.execute(query, args).fetchall()

    @staticmethod
    def _record(row: tuple) -> Record:
        seq, created, kind, body, prev, digest = row
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, TypeError):
            parsed = {"unreadable_body": str(body)[:200]}
        return Record(int(seq), str(created), str(kind), parsed, str(prev), str(digest))

    def records(self, since: int = 0, limit: int | None = None) -> list[Record]:
        query = "SELECT * FROM records WHERE seq >= ? ORDER BY seq"
        args: tuple = (since,)
        if limit is not None:
            query += " LIMIT ?"
            args += (limit,)
        return [self._record(r) for r in self._rows(query, args)]

    def get(self, seq: int) -> Record:
        rows = self._rows("SELECT * FROM records WHERE seq = ?", (seq,))
        if not rows:
            last = self.head()
            span = f"0..{last.seq}" if last is not None else "none yet"
            raise CrossforgetError(f"no audit record #{seq}; the log holds records {span}")
        return self._record(rows[0])

    def head(self) -> Record | None:
        """The last record (the serving version's), None for an empty log."""
        rows = self._rows("SELECT * FROM records ORDER BY seq DESC LIMIT 1")
        return self._record(rows[0]) if rows else None

    def verify(self, head: str | None = None) -> list[str]:
        """Problems found in the chain (empty when it is intact); ``head``: the expected last hash."""
        problems = []
        rows = self._rows("SELECT seq, created, kind, body, prev_hash, hash FROM records ORDER BY seq")
        prev = GENESIS
        for expected_seq, (seq, created, kind, body, prev_hash, digest) in enumerate(rows):
            if seq != expected_seq:
                problems.append(f"record #{expected_seq} is missing (the next one is #{seq})")
                break
            if prev_hash != prev:
                problems.append(f"record #{seq} does not link to record #{seq - 1} (its prev_hash differs)")
            if record_hash(seq, prev_hash, created, kind, str(body)) != digest:
                problems.append(f"record #{seq} was altered (its content no longer matches its hash)")
            prev = digest
        if not rows:
            problems.append("the log holds no record (not even the build)")
        elif rows[0][2] != "build":
            problems.append(f"record #0 is a {rows[0][2]!r} record, not the build")
        if head is not None and rows and rows[-1][5] != head:
            known = {r[5]: r[0] for r in rows}
            where = f"record #{known[head]}, not the last" if head in known else "no record"
            problems.append(
                f"the expected head hash {head[:12]}... is {where} (records cut off or replaced?)"
            )
        return problems
