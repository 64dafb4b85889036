"""The `normal` action: learning, flooding, VLAN access/trunk isolation, aging."""

from __future__ import annotations

from collections.abc import Callable

from scapy.layers.l2 import Dot1Q, Ether

from vnet.datapath import VlanMode

from .conftest import Rig, udp


def test_learning_floods_then_unicasts(rig: Callable[..., Rig]) -> None:
    r = rig()
    for n in ("a", "b", "c"):
        r.port(n)
    r.send("a", udp(1, 2))  # 2 unknown: flood to b and c, not back to a
    assert len(r.got("b")) == 1 and len(r.got("c")) == 1 and r.got("a") == []
    r.send("b", udp(2, 1))  # 1 was learned on a: unicast
    assert len(r.got("a")) == 1 and r.got("c") == []
    r.send("a", udp(1, 2))  # 2 learned on b now
    assert len(r.got("b")) == 1 and r.got("c") == []
    assert r.sw.macs.lookup(0, 0x020000000001) == 1


def test_access_vlans_never_leak(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a10", tag=10)
    r.port("b10", tag=10)
    r.port("c20", tag=20)
    r.send("a10", udp(1, "ff:ff:ff:ff:ff:ff"))
    assert len(r.got("b10")) == 1
    assert r.got("c20") == []
    r.send("c20", udp(3, 1))  # 1 is known in VLAN 10 only: VLAN 20 floods, nobody there
    assert r.got("a10") == [] and r.got("b10") == []
    assert r.sw.drops.get("normal_no_port") == 1
    # a tagged frame on an access port is refused
    r.send("a10", udp(1, 2, vlan=10))
    assert r.sw.drops.get("vlan_not_allowed") == 1


def test_trunk_carries_two_vlans(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a10", tag=10)
    r.port("b20", tag=20)
    r.port("t", vlan_mode=VlanMode.TRUNK, trunks=frozenset({10, 20}), port_security=False)
    r.send("a10", udp(1, 9))
    (f,) = r.got("t")
    assert Ether(f)[Dot1Q].vlan == 10 and r.got("b20") == []
    r.send("b20", udp(2, 9))
    (f,) = r.got("t")
    assert Ether(f)[Dot1Q].vlan == 20 and r.got("a10") == []
    # from the trunk: tag 20 goes untagged to b20 only
    r.send("t", udp(9, 2, vlan=20))
    (f,) = r.got("b20")
    assert Dot1Q not in Ether(f) and r.got("a10") == []
    # VLAN 30 is not allowed on the trunk
    r.send("t", udp(9, 2, vlan=30))
    assert r.sw.drops.get("vlan_not_allowed") == 1


def test_trunk_native_vlan_is_untagged(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a10", tag=10)
    r.port("t", vlan_mode=VlanMode.TRUNK, native_vlan=10, port_security=False)
    r.send("t", udp(9, 1))
    (f,) = r.got("a10")
    assert Dot1Q not in Ether(f)
    r.send("a10", udp(1, 9))
    (f,) = r.got("t")
    assert Dot1Q not in Ether(f)


def test_aging_move_and_limit(rig: Callable[..., Rig]) -> None:
    r = rig(mac_aging=10.0)
    r.port("a", mac_limit=2, port_security=False)
    r.port("b", port_security=False)
    r.send("a", udp(1, 9), now=0)
    r.send("a", udp(2, 9))
    r.send("a", udp(3, 9))  # third MAC on a: not learned
    assert r.sw.macs.lookup(0, 0x020000000003) is None
    assert r.sw.macs.refused == 1
    r.send("b", udp(1, 9))  # 1 moves to b
    assert r.sw.macs.lookup(0, 0x020000000001) == 2 and r.sw.macs.moves == 1
    r.got("a"), r.got("b")
    r.send("b", udp(2, 9), now=5)  # refreshes nothing for 2 (it moves), keep 1 fresh
    r.sw.tick(11)
    assert r.sw.macs.lookup(0, 0x020000000001) is None  # last seen at 0
    assert r.sw.macs.lookup(0, 0x020000000002) == 2  # seen at 5


def test_cached_decision_still_refreshes_learning(rig: Callable[..., Rig]) -> None:
    r = rig(mac_aging=10.0)
    r.port("a")
    r.port("b")
    for t in range(0, 30, 2):
        r.send("a", udp(1, 2), now=float(t))
        r.sw.tick(float(t))
    assert r.sw.macs.lookup(0, 0x020000000001) == 1
    assert r.sw.pipeline.cache_hits > 0


def test_port_down_is_not_flooded_and_counted(rig: Callable[..., Rig]) -> None:
    r = rig()
    r.port("a")
    b = r.port("b")
    r.port("c")
    r.sw.set_link(b, False)
    r.send("a", udp(1, 2))
    assert r.got("b") == [] and len(r.got("c")) == 1
