"""The snapshot's memory of what it has applied: id -> last rev, and tombstones for deleted ids.

The ledger is a SQLite file that travels inside every snapshot version next to Chroma's persist
directory. It is what makes delivery order irrelevant: an op whose rev is not newer than the
ledger's is stale, and a tombstone stops an older upsert from resurrecting a deleted record.
SQLite (rather than a JSON map) keeps a 100K-id ledger out of memory and lets an incremental
upload send only the pages a cycle touched.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

# SQLite caps bound parameters per statement; stay well under its default of 32766.
_IN_CHUNK = 900


@dataclass(frozen=True)
class Entry:
    rev: int
    deleted: bool
    deleted_at: float | None = None

    def sort_key(self) -> tuple[int, int]:
        """Comparable with Operation.sort_key: a tombstone at rev r outranks an upsert at rev r."""
        return (self.rev, 1 if self.deleted else 0)


class Ledger:
    """Open with ``Ledger(path)``; close before the file is hashed or uploaded."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        # Revs are stored as text: a rev derived from a stream sequence number exceeds int64.
        self._db.executescript(
            """
            PRAGMA journal_mode = DELETE;
            CREATE TABLE IF NOT EXISTS ledger (
                id TEXT PRIMARY KEY, rev TEXT NOT NULL, deleted INTEGER NOT NULL,
                deleted_at REAL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, ids: Iterable[str]) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id, rev, deleted, deleted_at FROM ledger WHERE id IN ({marks})",
                chunk,
            )
            for id_, rev, deleted, deleted_at in rows:
                found[id_] = Entry(int(rev), bool(deleted), deleted_at)
        return found

    def record(self, entries: Iterable[tuple[str, Entry]]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO ledger (id, rev, deleted, deleted_at) VALUES (?, ?, ?, ?)",
                ((id_, str(e.rev), int(e.deleted), e.deleted_at) for id_, e in entries),
            )

    def live_count(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM ledger WHERE deleted = 0").fetchone()
        return int(count)

    def tombstone_count(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM ledger WHERE deleted = 1").fetchone()
        return int(count)

    def prune_tombstones(self, older_than: float) -> int:
        """Forget tombstones past the horizon: no message that old can still be delivered."""
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM ledger WHERE deleted = 1 AND deleted_at < ?", (older_than,)
            )
        return cursor.rowcount

    def live_ids(self) -> Iterator[str]:
        for (id_,) in self._db.execute("SELECT id FROM ledger WHERE deleted = 0 ORDER BY id"):
            yield id_

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def dimension(self) -> int | None:
        value = self.get_meta("dimension")
        return None if value is None else int(value)

    @dimension.setter
    def dimension(self, value: int) -> None:
        self.set_meta("dimension", str(value))

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
