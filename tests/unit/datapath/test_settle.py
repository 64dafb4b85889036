"""What the signature cache owes is settled before anything could miss it.

Frames the cache serves charge their rules, tables, groups and MAC ages only
at `Switch.settle`.  These pin the places that must settle first: a tick
(aging, idle timeouts), a flow deletion (its counters leave with it), the
full path (capacity eviction picks the stalest MAC), and every reader.
"""

from __future__ import annotations

from collections.abc import Callable

from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow

from .conftest import Rig, mac, mac_int, udp


def _cached(r: Rig, port: str, frame: bytes, n: int, now: float) -> None:
    """`n` copies of `frame` in one batch, which the cache serves (checked)."""
    p = r.sw.port_by_name(port)
    assert p is not None
    hits = r.sw.fast_hits
    r.sw.receive_batch(p, [(b"", frame)] * n, now)
    assert r.sw.fast_hits == hits + n


def test_cached_frames_keep_their_source_mac_alive(rig: Callable[..., Rig]) -> None:
    r = rig(mac_aging=10.0)
    r.port("a", port_security=False)
    r.port("b", port_security=False)
    r.send("b", udp(2, 1), now=0.0)
    r.send("a", udp(1, 2), now=0.0)  # the full path learns 1 on a
    r.send("a", udp(1, 2), now=0.0)  # ... and, nothing learned this time, caches the flow
    _cached(r, "a", udp(1, 2), 3, now=8.0)
    r.sw.tick(12.0)  # 2 ages out; 1 was seen at 8
    assert r.sw.macs.lookup(0, mac_int(mac(1))) == 1
    assert r.sw.macs.lookup(0, mac_int(mac(2))) is None
    assert r.sw.macs.dump(12.0)[0][3] == 4.0


def test_cached_frames_keep_their_flow_alive_and_counted(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode="secure")
    r.port("a", port_security=False)
    r.port("b", port_security=False)
    r.sw.commit(
        [FlowMod(FlowModCommand.ADD, parse_flow("idle_timeout=10,in_port=1,actions=2").flow)]
    )
    r.send("a", udp(1, 2), now=0.0)
    _cached(r, "a", udp(1, 2), 3, now=8.0)
    assert r.sw.tick(12.0) == []  # idle since 8, not 0
    (rule,) = r.sw.pipeline.rules()
    assert (rule.packet_count, rule.used) == (4, 8.0)
    assert r.sw.pipeline.tables[0].lookups == 4
    _cached(r, "a", udp(1, 2), 2, now=13.0)
    (gone,) = r.sw.commit(
        [FlowMod(FlowModCommand.DELETE, parse_flow("in_port=1,actions=drop").flow)]
    )
    assert gone.packet_count == 6  # what FLOW_REMOVED reports
    assert gone.byte_count == 6 * len(udp(1, 2))


def test_the_stalest_mac_is_evicted_not_one_the_cache_saw(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.sw.macs.capacity = 3
    r.port("a", port_security=False)
    r.port("b", port_security=False)
    r.send("b", udp(2, 9), now=0.0)
    r.send("a", udp(3, 9), now=0.0)
    r.send("a", udp(1, 2), now=1.0)  # learns 1: every cached decision dropped
    r.send("a", udp(1, 2), now=1.0)  # cached now; 1 seen at 1
    r.send("b", udp(2, 9), now=2.0)  # refreshes only: the cache stays
    r.send("a", udp(3, 9), now=3.0)
    _cached(r, "a", udp(1, 2), 2, now=4.0)  # 1 seen at 4, charged later
    r.send("b", udp(4, 9), now=5.0)  # a fourth MAC: the full path makes room
    assert r.sw.macs.lookup(0, mac_int(mac(1))) == 1
    assert r.sw.macs.lookup(0, mac_int(mac(2))) is None  # seen at 2: the stalest


def test_the_stats_reader_sees_cached_frames(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a", port_security=False)
    r.port("b", port_security=False)
    r.send("b", udp(2, 1), now=0.0)
    r.send("a", udp(1, 2), now=0.0)
    r.send("a", udp(1, 2), now=0.0)
    _cached(r, "a", udp(1, 2), 5, now=3.0)
    r.sw.stats()
    (rule,) = r.sw.pipeline.rules()  # the default NORMAL flow
    assert rule.packet_count == 8
    assert rule.used == 3.0
