"""The store interface: objects by (kind, id), one global revision, watches.

Every commit is one transaction: all of its operations apply, or none, and
all of its objects take one new revision, the commit's.  An operation may
carry the revision the caller read (`expect`; 0 means "must not exist") and
the commit fails with `StaleRevision` naming the object if it moved on --
optimistic concurrency, as etcd's compare-and-swap on `mod_revision`.  Every
commit is also an event in an ordered log, readable from any revision
(`events_since`) so a watcher that was away catches up, and pushed to
subscribers; a log that no longer reaches back says `Compacted`: reload a
snapshot.

What callers may assume of revisions is what both stores keep: they only
grow; a commit that changed something returns a revision above every one
read before it, and an object's revision is the commit that last wrote it;
`snapshot` is one revision's whole state.  Not that they count commits:
SQLite's go up by one a commit, etcd's (its header revision, below) also
move for writes outside vnet's prefix, and stay put for a commit that
changes nothing.  So compare revisions for equality (anything new?) and
order, never do arithmetic on them.  Nothing in vnet does.

The store knows nothing of the model: values are JSON objects.  Two stores
implement it: `sqlite.SqliteStore` (embedded, one file) and `etcd.EtcdStore`
(keys `PREFIX KIND/ID`, an etcd txn with compares per commit, etcd's
`mod_revision` as the object revision and its header revision as the global
one, the watch for the log).  Where they differ: etcd delivers subscribers'
events from a watch thread (also for other processes' commits, and a little
after `commit` returns), while SQLite calls them inside `commit`, only for
its own process; etcd refuses a commit of more than 128 operations or 1.5 MiB
(a StoreError naming the limit, nothing changed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Compacted", "Event", "Op", "StaleRevision", "Store", "StoreError"]


class StoreError(RuntimeError):
    pass


class StaleRevision(StoreError):
    def __init__(self, kind: str, oid: str, expected: int, actual: int) -> None:
        self.kind, self.id, self.expected, self.actual = kind, oid, expected, actual
        what = "does not exist" if actual == 0 else f"is at revision {actual}"
        want = "not to exist" if expected == 0 else f"revision {expected}"
        super().__init__(f"{kind} {oid} {what} (expected {want})")


class Compacted(StoreError):
    """The log no longer reaches back to the asked revision: reload a snapshot."""


@dataclass(frozen=True)
class Op:
    kind: str
    id: str
    value: dict[str, Any] | None  # None: delete
    expect: int | None = None


@dataclass(frozen=True)
class Event:
    revision: int
    kind: str
    id: str
    value: dict[str, Any] | None  # None: deleted


class Store(Protocol):
    def revision(self) -> int: ...

    def snapshot(self) -> tuple[int, list[tuple[str, str, int, dict[str, Any]]]]:
        """(revision, [(kind, id, object revision, value)]) read in one transaction."""
        ...

    def get(self, kind: str, oid: str) -> tuple[int, dict[str, Any]] | None: ...

    def commit(self, ops: Sequence[Op]) -> int:
        """Apply all or nothing; returns the new revision (StaleRevision: nothing changed)."""
        ...

    def events_since(self, revision: int) -> list[Event]: ...

    def subscribe(self, fn: Callable[[list[Event]], None]) -> Callable[[], None]:
        """Call `fn` with each later commit's events, in order; returns the unsubscribe function.

        `fn([])` means events were lost (the log was compacted while a watch was
        away): reload a snapshot."""
        ...

    def close(self) -> None: ...
