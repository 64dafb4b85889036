"""What the etcd store adds: other clients' commits arrive by watch, etcd's limits, restarts,
the --store URL, and the controller's API on etcd as on SQLite."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.etcd_rig import EtcdCluster, free_ports, need_etcd
from vnet.api import create_app
from vnet.cli.main import app
from vnet.client import ApiError, Client
from vnet.controller.service import Controller
from vnet.store import Event, Op, StaleRevision, StoreError
from vnet.store.etcd import EtcdStore, _Watch, parse_endpoints


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.fixture
def prefix() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def etcd(etcd_server: EtcdCluster, prefix: str) -> Iterator[EtcdStore]:
    s = EtcdStore(etcd_server.endpoints, prefix)
    try:
        yield s
    finally:
        s.close()


# -- no etcd needed -----------------------------------------------------------------------------
def test_urls_and_endpoints() -> None:
    s = EtcdStore.from_url("etcd://10.0.0.1:2379,[::1]:2380")
    assert s.endpoints == [("10.0.0.1", 2379), ("::1", 2380)] and s.prefix == "/vnet/"
    assert EtcdStore.from_url("etcd://h:1/lab/one").prefix == "/lab/one/"
    for bad in ("h:2379", "http://h:2379", "etcd://", "etcd://h", "etcd://h:0", "etcd://h:x,"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            EtcdStore.from_url(bad)
    assert parse_endpoints("a:1, b:2") == [("a", 1), ("b", 2)]


def test_nothing_listening_is_a_store_error() -> None:
    (port,) = free_ports(1)
    s = EtcdStore([("127.0.0.1", port)])
    with pytest.raises(StoreError, match="no etcd endpoint answered"):
        s.revision()
    with pytest.raises(StoreError, match="no etcd endpoint answered"):
        s.commit([Op("tenant", "a", {"name": "a"})])


def test_controller_run_names_store_on_a_bad_url() -> None:
    r = CliRunner().invoke(app, ["controller", "run", "--store", "etcd://nowhere"])
    assert r.exit_code == 2 and "--store" in r.output and "HOST:PORT" in r.output, r.output
    (port,) = free_ports(1)
    r = CliRunner().invoke(app, ["controller", "run", "--store", f"etcd://127.0.0.1:{port}"])
    assert r.exit_code == 1 and "--store" in r.output and "answered" in r.output, r.output
    r = CliRunner().invoke(app, ["controller", "run", "--store", "etcd://h:1", "--db", "x.db"])
    assert r.exit_code == 2 and "--store and --db" in r.output, r.output


# -- against a throwaway etcd (integration: it runs the etcd binary) ---------------------------
@pytest.mark.integration
def test_watch_delivers_another_clients_commit(
    etcd: EtcdStore, etcd_server: EtcdCluster, prefix: str
) -> None:
    seen: list[list[Event]] = []
    etcd.subscribe(seen.append)
    other = EtcdStore(etcd_server.endpoints, prefix)  # another process' client, in effect
    try:
        rev = other.commit([Op("network", "n", {"name": "n"}), Op("port", "p", {"name": "p"})])
        wait_until(lambda: len(seen) >= 1)
        assert [[(e.revision, e.kind, e.id) for e in b] for b in seen] == [
            [(rev, "network", "n"), (rev, "port", "p")]
        ]
        # writes outside the prefix move etcd's revision, yet are no events of this store
        elsewhere = EtcdStore(etcd_server.endpoints, prefix.rstrip("/") + "-other/")
        r2 = elsewhere.commit([Op("tenant", "t", {"name": "t"})])
        elsewhere.close()
        assert etcd.revision() == r2 > rev and etcd.events_since(rev) == []
        time.sleep(0.1)
        assert len(seen) == 1
    finally:
        other.close()


@pytest.mark.integration
def test_etcd_limits_refuse_the_whole_commit(etcd: EtcdStore) -> None:
    before = etcd.revision()
    ops = [Op("port", f"p{i}", {"name": f"p{i}"}, 0) for i in range(129)]
    with pytest.raises(StoreError, match="at most 128 operations") as e:
        etcd.commit(ops)
    assert "nothing was changed" in str(e.value)
    assert etcd.revision() == before and etcd.snapshot()[1] == []
    rev = etcd.commit(ops[:128])  # at the limit: one transaction
    assert len(etcd.snapshot()[1]) == 128 and {r for _, _, r, _ in etcd.snapshot()[1]} == {rev}
    big = [Op("blob", str(i), {"data": "x" * 400_000}) for i in range(4)]  # ~1.6 MB
    with pytest.raises(StoreError, match="at most 1572864 bytes per request"):
        etcd.commit(big)
    assert etcd.revision() == rev and etcd.get("blob", "0") is None
    with pytest.raises(StoreError, match="changed twice"):
        etcd.commit([Op("blob", "0", {"a": 1}), Op("blob", "0", None)])
    assert etcd.revision() == rev


@pytest.mark.integration
def test_a_watch_survives_an_etcd_restart(etcd_server: EtcdCluster, prefix: str) -> None:
    a = EtcdStore(etcd_server.endpoints, prefix)
    b = EtcdStore(etcd_server.endpoints, prefix)
    seen: list[list[Event]] = []
    try:
        a.subscribe(seen.append)
        r1 = b.commit([Op("tenant", "a", {"name": "a"})])
        wait_until(lambda: len(seen) == 1)
        etcd_server.restart(0)  # SIGKILL, the same data and ports
        r2 = b.commit([Op("tenant", "b", {"name": "b"})])
        r3 = b.commit([Op("tenant", "a", None, r1)])
        wait_until(lambda: len(seen) == 3, timeout=10)
        assert [[(e.revision, e.id, e.value is None) for e in x] for x in seen] == [
            [(r1, "a", False)],
            [(r2, "b", False)],
            [(r3, "a", True)],
        ]
        assert a.get("tenant", "b") == (r2, {"name": "b", "revision": r2})  # durable
    finally:
        a.close()
        b.close()


@pytest.mark.integration
def test_the_api_on_etcd_as_on_sqlite(etcd: EtcdStore) -> None:
    ctl = Controller(etcd)
    with TestClient(create_app(ctl)) as http:
        api = Client("http://testserver", http=http)
        api.apply(
            {
                "tenants": [{"name": "blue"}],
                "networks": [{"name": "net", "tenant": "blue"}],
                "subnets": [
                    {"name": "s", "tenant": "blue", "network": "net", "cidr": "10.0.0.0/24"}
                ],
            }
        )
        p = api.create("port", name="vm1", tenant="blue", network="net")
        assert p["fixed_ips"][0]["ip"] == "10.0.0.2" and p["revision"] == etcd.revision()
        assert api.get("port", "vm1")["id"] == p["id"]
        q = api.update("port", "vm1", {"description": "web"}, revision=p["revision"])
        assert q["revision"] > p["revision"]
        with pytest.raises(ApiError) as e:
            api.update("port", "vm1", {"description": "x"}, revision=p["revision"])
        assert e.value.status == 409 and e.value.loc == ["revision"]
        with pytest.raises(ApiError) as e:  # the MAC is taken: refused, nothing stored
            api.create("port", name="vm2", tenant="blue", network="net", mac=p["mac"])
        assert e.value.status == 409 and [x["name"] for x in api.list("ports")] == ["vm1"]
        # what the API wrote is in etcd, under the prefix, for any other reader
        kinds = sorted({k for k, _, _, _ in etcd.snapshot()[1]})
        assert kinds == ["network", "port", "subnet", "tenant"]
        api.delete("network", "net", cascade=True)
        assert api.list("ports") == [] and etcd.get("port", p["id"]) is None


@pytest.mark.integration
def test_a_watch_behind_a_compaction_says_events_were_lost(etcd: EtcdStore) -> None:
    revs = [etcd.commit([Op("tenant", "a", {"name": str(i)})]) for i in range(3)]
    etcd.compact(revs[-1])
    seen: list[list[Event]] = []
    w = _Watch(etcd, revs[0], seen.append)  # as one that was away since revs[0] reconnects
    w.start()
    try:
        wait_until(lambda: len(seen) == 1)
        assert seen == [[]]  # lost: reload a snapshot
        r = etcd.commit([Op("tenant", "b", {"name": "b"})])
        wait_until(lambda: len(seen) == 2)
        assert [(e.revision, e.id) for e in seen[1]] == [(r, "b")]  # and it carries on
    finally:
        w.stop()
        w.join(timeout=2)
    assert not w.is_alive()


@pytest.mark.integration
def test_close_ends_the_watch_threads(etcd_server: EtcdCluster, prefix: str) -> None:
    s = EtcdStore(etcd_server.endpoints, prefix)
    s.subscribe(lambda _: None)
    cancel = s.subscribe(lambda _: None)
    threads = list(s._watches)
    cancel()
    s.close()
    for t in threads:
        t.join(timeout=2)
    assert threads and not any(t.is_alive() for t in threads)


@pytest.fixture
def cluster3() -> Iterator[EtcdCluster]:
    """Three etcd members on loopback, for the fault tests."""
    c = EtcdCluster(3, need_etcd())
    try:
        yield c.start()
    finally:
        c.stop()


def _leader(c: EtcdCluster) -> int:
    """The index of the member that is the raft leader now."""
    for i, port in enumerate(c.client_ports):
        if c.procs[i] is None:
            continue
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v3/maintenance/status", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(req, timeout=2) as r:
            st = json.load(r)
        if st["leader"] == st["header"]["member_id"]:
            return i
    raise AssertionError("no leader")


@pytest.mark.integration
def test_one_member_of_three_killed_writes_go_on(cluster3: EtcdCluster) -> None:
    """The member the store talks to, the leader, is killed while a writer commits: the
    store moves to another member, no acknowledged commit is lost, and a commit whose
    answer was lost is settled by its compare (expect=0: applied, or applies now).

    A proposal caught by the leader's death waits out etcd's request timeout (about
    6 s with these election settings) unless the client gives up first: the writer's
    timeout is 2 s here, and its retries settle the outcome."""
    lead = _leader(cluster3)
    order = [lead] + [i for i in range(3) if i != lead]
    eps = [("127.0.0.1", cluster3.client_ports[i]) for i in order]
    writer, watcher = EtcdStore(eps, "/f/", timeout=2.0), EtcdStore(eps, "/f/")
    seen: list[str] = []
    watcher.subscribe(lambda b: seen.extend(e.id for e in b))
    acked: list[str] = []
    unsure, stall = 0, 0.0
    t0 = time.monotonic()
    killed_at: int | None = None
    resumed: float | None = None
    try:
        i = 0
        while resumed is None or time.monotonic() - resumed < 1.0:
            assert time.monotonic() - t0 < 20, "writes did not resume"
            if killed_at is None and time.monotonic() - t0 > 1.0:
                cluster3.kill(lead)
                killed_at = len(acked)
            op = Op("port", f"p{i:05d}", {"n": i}, 0)
            start = time.monotonic()
            while True:
                try:
                    writer.commit([op])
                except StaleRevision:  # the commit whose answer was lost had applied
                    pass
                except StoreError:
                    unsure += 1
                    time.sleep(0.05)
                    continue
                break
            acked.append(op.id)
            stall = max(stall, time.monotonic() - start)
            if killed_at is not None and resumed is None:
                resumed = time.monotonic()
            i += 1
        assert killed_at is not None
        after = len(acked) - killed_at
        print(
            f"etcd leader killed: {len(acked)} commits, {after} after the kill, "
            f"longest commit {stall:.2f} s, {unsure} tries with no answer"
        )
        assert killed_at > 10 and after > 10
        ids = [i for _, i, _, _ in writer.snapshot()[1]]
        assert ids == acked  # every acknowledged commit is there, nothing else
        wait_until(lambda: len(seen) >= len(acked), timeout=10)
        assert seen == acked  # the watch moved too: each commit once, in order
        fresh = EtcdStore(eps, "/f/")  # the dead member first: the history from the others
        assert [e.id for e in fresh.events_since(0)] == acked
        fresh.close()
        # a second member killed: the last one has no quorum and says so at once
        last = order[2]
        cluster3.kill(order[1])
        alone = EtcdStore([("127.0.0.1", cluster3.client_ports[last])], "/f/", timeout=1)
        # until it notices (an election timeout or so) a read may wait in vain
        wait_until(lambda: "no leader" in _error(alone.revision), timeout=10)
        start = time.monotonic()
        msg = _error(lambda: alone.commit([Op("port", "late", {"n": 0}, 0)]))
        assert "no leader" in msg and time.monotonic() - start < 1.0, msg
        alone.close()
    finally:
        writer.close()
        watcher.close()


def _error(fn: Callable[[], object]) -> str:
    try:
        fn()
    except StoreError as e:
        return str(e)
    return ""
