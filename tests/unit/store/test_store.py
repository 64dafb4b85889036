"""The Store interface's semantics, run against every store (SQLite and etcd)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from vnet.store import Compacted, Event, Op, SqliteStore, StaleRevision, Store
from vnet.store.etcd import EtcdStore


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_commit_is_all_or_nothing_with_compare_on_revision(store: Store) -> None:
    r1 = store.commit([Op("tenant", "a", {"name": "a"}, 0), Op("tenant", "b", {"name": "b"}, 0)])
    assert store.revision() == r1
    assert store.get("tenant", "a") == (r1, {"name": "a", "revision": r1})
    assert store.get("tenant", "b") == (r1, {"name": "b", "revision": r1})  # one revision
    # expect=0: must not exist; the failed compare leaves nothing, not even the ops before it
    with pytest.raises(StaleRevision) as e:
        store.commit([Op("tenant", "c", {"name": "c"}, 0), Op("tenant", "a", {"name": "x"}, 0)])
    assert (e.value.kind, e.value.id, e.value.expected, e.value.actual) == ("tenant", "a", 0, r1)
    assert "tenant a" in str(e.value)
    assert store.get("tenant", "c") is None and store.revision() == r1
    assert store.get("tenant", "a") == (r1, {"name": "a", "revision": r1})
    # expect=N: only if nobody changed it since N
    r2 = store.commit([Op("tenant", "a", {"name": "a2"}, r1)])
    assert r2 > r1 and store.get("tenant", "a") == (r2, {"name": "a2", "revision": r2})
    with pytest.raises(StaleRevision) as e:
        store.commit([Op("tenant", "b", None, r1), Op("tenant", "a", {"name": "a3"}, r1)])
    assert (e.value.id, e.value.expected, e.value.actual) == ("a", r1, r2)
    assert store.get("tenant", "b") is not None and store.revision() == r2
    with pytest.raises(StaleRevision) as e:
        store.commit([Op("tenant", "ghost", {"name": "g"}, r1)])  # expected to exist
    assert e.value.actual == 0 and "does not exist" in str(e.value)
    r3 = store.commit([Op("tenant", "a", None, r2)])
    assert r3 > r2 and store.get("tenant", "a") is None
    rev, rows = store.snapshot()
    assert rev == r3 and rows == [("tenant", "b", r1, {"name": "b", "revision": r1})]


def test_snapshot_is_ordered_by_kind_then_id(store: Store) -> None:
    ops = [Op(k, i, {"k": k, "i": i}) for k, i in [("port", "b"), ("port-x", "a"), ("net", "z")]]
    ops.append(Op("port", "a", {"k": "port", "i": "a"}))
    rev = store.commit(ops)
    got_rev, rows = store.snapshot()
    assert got_rev == rev
    assert [(k, i) for k, i, _, _ in rows] == [
        ("net", "z"),
        ("port", "a"),
        ("port", "b"),
        ("port-x", "a"),
    ]
    assert all(r == rev and v["revision"] == rev for _, _, r, v in rows)


def test_events_and_subscribers(store: Store) -> None:
    seen: list[list[Event]] = []
    cancel = store.subscribe(seen.append)
    r1 = store.commit([Op("tenant", "a", {"name": "a"}), Op("tenant", "b", {"name": "b"})])
    r2 = store.commit([Op("tenant", "a", None)])

    def batches() -> list[list[tuple[int, str, bool]]]:
        return [[(e.revision, e.id, e.value is None) for e in b] for b in seen]

    want = [[(r1, "a", False), (r1, "b", False)], [(r2, "a", True)]]  # one batch a commit
    wait_until(lambda: len(seen) >= 2)
    assert batches() == want
    assert seen[0][0].value == {"name": "a", "revision": r1}
    cancel()
    r3 = store.commit([Op("tenant", "c", {"name": "c"})])
    time.sleep(0.2)  # a watch that was cancelled delivers nothing more
    assert batches() == want
    got = store.events_since(r1)
    assert [(e.revision, e.kind, e.id, e.value) for e in got] == [
        (r2, "tenant", "a", None),
        (r3, "tenant", "c", {"name": "c", "revision": r3}),
    ]
    assert store.events_since(r3) == []
    assert [e.id for e in store.events_since(r1 - 1)] == ["a", "b", "a", "c"]


def test_a_compacted_log_says_so(store: Store) -> None:
    revs = []
    if isinstance(store, SqliteStore):  # keeps 50 commits, trimmed every 100th
        for i in range(200):
            revs.append(store.commit([Op("tenant", "a", {"name": str(i)})]))
        floor = revs[149]
    else:
        assert isinstance(store, EtcdStore)
        for i in range(20):
            revs.append(store.commit([Op("tenant", "a", {"name": str(i)})]))
        floor = revs[10]
        store.compact(floor)
    with pytest.raises(Compacted):
        store.events_since(revs[0])
    got = store.events_since(floor)
    assert [e.revision for e in got] == revs[revs.index(floor) + 1 :]
    assert got[-1].value == {"name": str(len(revs) - 1), "revision": revs[-1]}
    # the objects themselves are all there: a snapshot answers what the log cannot
    assert store.snapshot()[1][0][3]["name"] == str(len(revs) - 1)
