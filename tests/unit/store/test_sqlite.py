"""What only the SQLite store does: revisions count commits, the file survives a reopen."""

from __future__ import annotations

from pathlib import Path

from vnet.store import Op, SqliteStore


def test_each_commit_counts_one_revision(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "v.db")
    assert s.revision() == 0
    assert s.commit([Op("tenant", "a", {"name": "a"}, 0), Op("tenant", "b", {"name": "b"})]) == 1
    assert s.commit([Op("tenant", "a", None, 1)]) == 2
    assert s.commit([Op("tenant", "ghost", None)]) == 3  # even one that changes nothing


def test_survives_reopen(tmp_path: Path) -> None:
    p = tmp_path / "v.db"
    SqliteStore(p).commit([Op("chassis", "h", {"name": "h"})])
    again = SqliteStore(p)
    assert again.revision() == 1 and again.get("chassis", "h") is not None
