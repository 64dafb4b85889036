"""The embedded store: one SQLite file in WAL mode.

Two tables: `objects` (kind, id, revision, JSON value) and `events` (the
commit log, one row per changed object, trimmed to the last `keep` commits).
The global revision is the largest event revision ever written, kept in
`meta` so trimming the log never lowers it.  A commit runs in one
`BEGIN IMMEDIATE` transaction: the compares (`expect`) and the writes see
the same data, and a second process writing the same file waits its turn.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import Compacted, Event, Op, StaleRevision

__all__ = ["SqliteStore", "default_path"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, id TEXT NOT NULL, revision INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, value TEXT);
CREATE INDEX IF NOT EXISTS events_rev ON events (revision);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
"""


def default_path() -> Path:
    """$VNET_DB, else the user's data directory (XDG_DATA_HOME)/vnet/vnet.db."""
    env = os.environ.get("VNET_DB")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "vnet" / "vnet.db"


class SqliteStore:
    def __init__(self, path: str | Path = ":memory:", keep: int = 10000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._subs: list[Callable[[list[Event]], None]] = []
        self.keep = keep

    def revision(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k='revision'").fetchone()
            return int(row[0])

    def snapshot(self) -> tuple[int, list[tuple[str, str, int, dict[str, Any]]]]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rev = int(self._db.execute("SELECT v FROM meta WHERE k='revision'").fetchone()[0])
                rows = self._db.execute(
                    "SELECT kind, id, revision, value FROM objects ORDER BY kind, id"
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        return rev, [(k, i, r, json.loads(v)) for k, i, r, v in rows]

    def get(self, kind: str, oid: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT revision, value FROM objects WHERE kind=? AND id=?", (kind, oid)
            ).fetchone()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def commit(self, ops: Sequence[Op]) -> int:
        if not ops:
            return self.revision()
        db = self._db
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                rev = int(db.execute("SELECT v FROM meta WHERE k='revision'").fetchone()[0]) + 1
                events = []
                for op in ops:
                    row = db.execute(
                        "SELECT revision FROM objects WHERE kind=? AND id=?", (op.kind, op.id)
                    ).fetchone()
                    actual = int(row[0]) if row else 0
                    if op.expect is not None and op.expect != actual:
                        raise StaleRevision(op.kind, op.id, op.expect, actual)
                    if op.value is None:
                        db.execute("DELETE FROM objects WHERE kind=? AND id=?", (op.kind, op.id))
                        text = None
                    else:
                        text = json.dumps({**op.value, "revision": rev}, sort_keys=True)
                        db.execute(
                            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?)",
                            (op.kind, op.id, rev, text),
                        )
                    db.execute(
                        "INSERT INTO events VALUES (?, ?, ?, ?)", (rev, op.kind, op.id, text)
                    )
                    events.append(
                        Event(rev, op.kind, op.id, None if text is None else json.loads(text))
                    )
                db.execute("UPDATE meta SET v=? WHERE k='revision'", (rev,))
                if rev % 100 == 0 and rev > self.keep:
                    floor = rev - self.keep
                    db.execute("DELETE FROM events WHERE revision <= ?", (floor,))
                    db.execute("UPDATE meta SET v=? WHERE k='compacted'", (floor,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            subs = list(self._subs)
        for fn in subs:
            fn(events)
        return rev

    def events_since(self, revision: int) -> list[Event]:
        with self._lock:
            floor = int(self._db.execute("SELECT v FROM meta WHERE k='compacted'").fetchone()[0])
            if revision < floor:
                raise Compacted(f"the log starts after revision {floor}; asked from {revision}")
            rows = self._db.execute(
                "SELECT revision, kind, id, value FROM events WHERE revision > ? "
                "ORDER BY revision, rowid",
                (revision,),
            ).fetchall()
        return [Event(r, k, i, None if v is None else json.loads(v)) for r, k, i, v in rows]

    def subscribe(self, fn: Callable[[list[Event]], None]) -> Callable[[], None]:
        with self._lock:
            self._subs.append(fn)

        def cancel() -> None:
            with self._lock:
                if fn in self._subs:
                    self._subs.remove(fn)

        return cancel

    def close(self) -> None:
        with self._lock:
            self._db.close()
