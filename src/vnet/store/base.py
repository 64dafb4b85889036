"""The store interface: objects by (kind, id), one global revision, watches.

Every commit is one transaction: all of its operations apply, or none, and
the global revision goes up by one.  An operation may carry the revision the
caller read (`expect`; 0 means "must not exist") and the commit fails with
`StaleRevision` if the object moved on -- optimistic concurrency, as etcd's
compare-and-swap on `mod_revision`.  Every commit is also an event in an
ordered log, readable from any revision (`events_since`) so a watcher that
was away catches up, and pushed to in-process subscribers.

The store knows nothing of the model: values are JSON objects.  The shape is
chosen so a distributed key-value store with watches (etcd: keys
`/vnet/KIND/ID`, a txn with compares, watch from a revision) implements it
without changing callers.
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
        """Call `fn` with each commit's events; returns the unsubscribe function."""
        ...

    def close(self) -> None: ...
