from __future__ import annotations

from pathlib import Path

import pytest

from vnet.store import Compacted, Event, Op, SqliteStore, StaleRevision


def test_commit_is_atomic_and_counts_one_revision(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "v.db")
    assert s.revision() == 0
    rev = s.commit([Op("tenant", "a", {"name": "a"}, 0), Op("tenant", "b", {"name": "b"}, 0)])
    assert rev == 1 and s.revision() == 1
    assert s.get("tenant", "a") == (1, {"name": "a", "revision": 1})
    # a failed compare leaves nothing behind, not even the operations before it
    with pytest.raises(StaleRevision) as e:
        s.commit([Op("tenant", "c", {"name": "c"}, 0), Op("tenant", "a", {"name": "x"}, 0)])
    assert e.value.actual == 1
    assert s.get("tenant", "c") is None and s.revision() == 1
    s.commit([Op("tenant", "a", None, 1)])
    assert s.get("tenant", "a") is None
    rev, rows = s.snapshot()
    assert rev == 2 and [(k, i) for k, i, _, _ in rows] == [("tenant", "b")]


def test_survives_reopen(tmp_path: Path) -> None:
    p = tmp_path / "v.db"
    SqliteStore(p).commit([Op("chassis", "h", {"name": "h"})])
    again = SqliteStore(p)
    assert again.revision() == 1 and again.get("chassis", "h") is not None


def test_events_and_subscribers() -> None:
    s = SqliteStore()
    seen: list[list[Event]] = []
    cancel = s.subscribe(seen.append)
    s.commit([Op("tenant", "a", {"name": "a"})])
    s.commit([Op("tenant", "a", None)])
    cancel()
    s.commit([Op("tenant", "b", {"name": "b"})])
    assert [[(e.revision, e.id, e.value is None) for e in batch] for batch in seen] == [
        [(1, "a", False)],
        [(2, "a", True)],
    ]
    assert [e.revision for e in s.events_since(1)] == [2, 3]


def test_trimmed_log_says_compacted() -> None:
    s = SqliteStore(keep=50)
    for i in range(200):
        s.commit([Op("tenant", "a", {"name": str(i)})])
    assert s.revision() == 200
    with pytest.raises(Compacted):
        s.events_since(10)
    assert len(s.events_since(190)) == 10
