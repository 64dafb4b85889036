"""Port security, select/fast-failover groups, meters, fail modes, unsupported actions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from vnet.datapath import FailMode
from vnet.datapath.meters import OFPMF_PKTPS, Band, MeterConfig
from vnet.packet.addr import ip4_int, mac_int
from vnet.pipeline.errors import ErrorKind, PipelineError
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.groups import GroupMod, GroupModCommand
from vnet.pipeline.ofctl import parse_flow, parse_group

from .conftest import Rig, arp, mac, udp


def add(r: Rig, *flows: str) -> None:
    r.sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(f).flow) for f in flows])


def test_forged_source_mac_is_dropped(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a", mac=mac_int(mac(1)))
    r.port("b")
    r.send("a", udp(7, 2))  # claims 02:..:07 on a port of 02:..:01
    assert r.got("b") == []
    assert r.sw.drops["forged_transmit"] == 1
    r.send("a", udp(1, 2))
    assert len(r.got("b")) == 1


def test_sticky_mac_refuses_a_change(rig: Callable[..., Rig]) -> None:
    r = rig()
    a = r.port("a")
    r.port("b")
    r.send("a", udp(1, 2))
    assert a.locked_mac == mac_int(mac(1))
    r.send("a", udp(5, 2))
    assert r.sw.drops["forged_transmit"] == 1
    r2 = rig()
    r2.port("a", mac_changes=True)
    r2.port("b")
    r2.send("a", udp(1, 2))
    r2.send("a", udp(5, 2))
    assert len(r2.got("b")) == 2


def test_spoofed_arp_is_dropped(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a", mac=mac_int(mac(1)), allowed_ips=frozenset({(4, ip4_int("10.0.0.1"))}))
    r.port("b")
    r.send("a", arp(1, "10.0.0.99", "10.0.0.2"))  # claims someone else's address
    r.send("a", arp(1, "10.0.0.1", "10.0.0.2", sha=mac(9)))  # sender MAC not the port's
    assert r.got("b") == []
    assert r.sw.drops["arp_spoof"] == 2
    r.send("a", arp(1, "10.0.0.1", "10.0.0.2"))
    assert len(r.got("b")) == 1
    r.send("a", udp(1, 2))  # source 10.0.0.1: allowed
    assert len(r.got("b")) == 1
    raw = bytearray(udp(1, 2))
    raw[26:30] = bytes([10, 0, 0, 77])  # source IP rewritten (checksum aside)
    r.send("a", bytes(raw))
    assert r.sw.drops["ip_spoof"] == 1


def test_no_promiscuous_mode_by_default(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a")
    r.port("b", mac=mac_int(mac(2)))
    r.port("c", mac=mac_int(mac(3)), promiscuous=True)
    r.send("a", udp(1, 9))  # unknown unicast for 9: flooded; b must not see it
    assert r.got("b") == [] and len(r.got("c")) == 1
    assert r.sw.drops["not_promiscuous"] == 1
    r.send("a", udp(1, "ff:ff:ff:ff:ff:ff"))
    assert len(r.got("b")) == 1


def test_select_group_spreads_1000_flows_within_15_percent(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode=FailMode.SECURE)
    r.port("in", port_security=False)
    for n in ("o1", "o2", "o3"):
        r.port(n)
    g = parse_group("group_id=1,type=select,bucket=output:2,bucket=output:3,bucket=output:4")
    r.sw.commit([GroupMod(GroupModCommand.ADD, g)])
    add(r, "in_port=1,actions=group:1")
    for i in range(1000):
        r.send("in", udp(1, 2, sport=1024 + i, dport=80 + i % 7))
    counts = Counter({n: len(r.got(n)) for n in ("o1", "o2", "o3")})
    assert sum(counts.values()) == 1000
    for n, c in counts.items():
        assert abs(c - 1000 / 3) <= 0.15 * 1000 / 3, (n, counts)
    # the same 5-tuple always takes the same bucket
    for _ in range(5):
        r.send("in", udp(1, 2, sport=5555, dport=80))
    assert sorted(len(r.got(n)) for n in ("o1", "o2", "o3")) == [0, 0, 5]


def test_fast_failover_follows_liveness(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode=FailMode.SECURE)
    r.port("in", port_security=False)
    p1 = r.port("primary")
    r.port("backup")
    g = parse_group("group_id=5,type=ff,bucket=watch_port:2,output:2,bucket=watch_port:3,output:3")
    r.sw.commit([GroupMod(GroupModCommand.ADD, g)])
    add(r, "in_port=1,actions=group:5")
    r.send("in", udp(1, 2))
    assert len(r.got("primary")) == 1
    r.sw.set_link(p1, False)
    r.send("in", udp(1, 2))
    assert r.got("primary") == [] and len(r.got("backup")) == 1


def test_meter_caps_rate(rig: Callable[..., Rig]) -> None:
    r = rig(fail_mode=FailMode.SECURE)
    r.port("in", port_security=False)
    r.port("out")
    r.sw.meter_mod(MeterConfig(1, OFPMF_PKTPS, (Band(rate=100, burst=10),)), "add")
    add(r, "in_port=1,actions=meter:1,output:2")
    # 1000 packets/s offered for 2 s
    for i in range(2000):
        r.send("in", udp(1, 2), now=i / 1000)
    delivered = len(r.got("out"))
    assert 200 <= delivered <= 215, delivered
    assert r.sw.drops["meter"] == 2000 - delivered


def test_fail_modes(rig: Callable[..., Rig]) -> None:
    sa = rig()  # standalone, no controller: default NORMAL flow
    assert [rl.flow.priority for rl in sa.sw.pipeline.rules()] == [0]
    sa.port("a")
    sa.port("b")
    sa.send("a", udp(1, 2))
    assert len(sa.got("b")) == 1
    se = rig(fail_mode=FailMode.SECURE)  # secure: nothing installed, nothing forwarded
    se.port("a")
    se.port("b")
    se.send("a", udp(1, 2))
    assert se.got("b") == [] and se.sw.drops["no_match"] == 1
    fo = rig()  # standalone with a controller configured but unreachable: fail open
    fo.sw.set_controllers(1)
    assert fo.sw.pipeline.rules() == []
    fo.port("a")
    fo.port("b")
    fo.send("a", udp(1, 2))
    assert len(fo.got("b")) == 1
    fo.sw.controller_connected(+1)  # controller back: its (empty) tables rule
    fo.send("a", udp(1, 2))
    assert fo.got("b") == []


@pytest.mark.parametrize("actions", ["ct(commit,alg=tftp)", "ct(commit,alg=7)"])
def test_helpers_are_refused_until_they_exist(rig: Callable[..., Rig], actions: str) -> None:
    r = rig()
    before = r.sw.pipeline.rules()
    with pytest.raises(PipelineError) as e:
        add(r, f"ip,actions={actions}")
    assert e.value.kind == ErrorKind.UNSUPPORTED_ACTION
    assert r.sw.pipeline.rules() == before


def test_malformed_frames_are_counted(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a")
    r.port("b")
    r.send("a", b"\x01\x02")
    assert r.sw.drops["malformed"] == 1
    p = r.sw.port_by_name("a")
    assert p is not None and p.stats.rx_errors == 1
