"""Table, flow, port and group counters are exact on the full path and the cache alike.

OpenFlow 1.3 counts every packet a table looks up in `lookup_count`, matched or
not, and only the hits in `matched_count`; a packet dropped before the
pipeline (port security, a runt) is the port's `rx_dropped` or `rx_errors`
and no table's lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.groups import GroupMod, GroupModCommand
from vnet.pipeline.ofctl import parse_flow, parse_group

from .conftest import Rig, mac, mac_int, udp


def _flows(r: Rig, *texts: str) -> None:
    r.sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in texts])


def test_a_table_miss_is_a_lookup_on_both_paths(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode="secure")
    r.port("a", port_security=False)
    r.port("b", port_security=False)
    _flows(r, "table=0,udp,tp_dst=2000,actions=goto_table:1", "table=1,udp,actions=output:2")
    a = r.sw.port_by_name("a")
    assert a is not None
    hit, miss = udp(1, 2), udp(1, 2, dport=2001)
    for fast in (False, True):
        r.sw.fast = fast
        before = [(t.lookups, t.matches) for t in r.sw.pipeline.tables[:2]]
        r.sw.receive_batch(a, [(b"", hit)] * 3 + [(b"", miss)] * 4, 1.0)
        r.sw.receive_batch(a, [(b"", miss)] * 5 + [(b"", hit)] * 2, 2.0)
        after = [(t.lookups, t.matches) for t in r.sw.pipeline.tables[:2]]
        assert [(x - y, u - v) for (x, u), (y, v) in zip(after, before, strict=True)] == [
            (14, 5),
            (5, 5),
        ]
    assert r.sw.fast_hits > 0  # the second round's repeats took the cache
    assert r.sw.drops["no_match"] == 18
    assert len(r.got("b")) == 10


def test_frames_dropped_before_the_pipeline_are_no_lookup(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode="secure")
    r.port("a", mac=mac_int(mac(1)))
    r.port("b", port_security=False)
    _flows(r, "in_port=1,actions=output:2")
    r.send("a", udp(7, 2))  # a forged source: port security drops it
    r.send("a", b"\x00" * 10)  # a runt
    r.send("a", udp(1, 2))
    t0 = r.sw.pipeline.tables[0]
    assert (t0.lookups, t0.matches) == (1, 1)
    a = r.sw.port_by_name("a")
    assert a is not None
    assert (a.stats.rx_packets, a.stats.rx_dropped, a.stats.rx_errors) == (3, 1, 1)


def test_rewrites_and_groups_cached_count_like_the_full_path(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode="secure")
    for name in "abc":
        r.port(name, port_security=False)
    r.sw.commit(
        [
            GroupMod(
                GroupModCommand.ADD,
                parse_group("group_id=7,type=all,bucket=output:2,bucket=mod_tp_dst:9,output:3"),
            )
        ]
    )
    _flows(r, "in_port=1,udp,actions=mod_nw_ttl:9,group:7")
    a = r.sw.port_by_name("a")
    assert a is not None
    frame = udp(1, 2)
    r.sw.receive_batch(a, [(b"", frame)] * 6, 1.0)
    assert r.sw.fast_hits == 5
    (rule,) = r.sw.pipeline.rules()
    assert (rule.packet_count, rule.byte_count) == (6, 6 * len(frame))
    g = r.sw.pipeline.groups[7]
    assert (g.packet_count, g.byte_count) == (6, 6 * len(frame))
    b, c = r.got("b"), r.got("c")
    assert len(b) == len(c) == 6 and len(set(b)) == len(set(c)) == 1
    assert b[0][22] == 9 and c[0][22] == 9  # the TTL, rewritten in every copy
    assert c[0][36:38] == (9).to_bytes(2, "big")  # and the second bucket's port
    for p in r.sw.ports.values():
        n = 6 if p.name != "a" else 0
        assert (p.stats.tx_packets, p.stats.tx_bytes) == (n, n * len(frame))
