"""Learned neighbours compiled: a binding's flows, where they rank, what they cost.

The model of `test_router` (two dual-stack networks behind router r) with
`Neighbour` objects as the controller would store them; run on real vnet
switches by its `Rig`.
"""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from vnet.compiler import Compiler, neighbour
from vnet.compiler.stages import stage_of
from vnet.model.neighbour import neighbour_id, neighbour_name
from vnet.model.objects import Neighbour, Route
from vnet.model.rules import State

from .test_router import GW_MAC, IP4, MAC, ONE, Rig, model, ping4, ping6

LEARNED = "02:00:00:00:02:77"


def learned(ip: str, mac: str = LEARNED, network: str = "n2", seen: float = 1.0) -> Neighbour:
    return Neighbour(id=neighbour_id("r", network, ip), name=neighbour_name(ip), tenant="t",
                     router="r", network=network, ip=ip, mac=mac, seen_at=seen)  # fmt: skip


def with_(state: State, *objs: Any) -> State:
    """`state` with `objs` put in (replacing any of the same kind and id)."""
    keep = {(o.kind, o.id) for o in objs}
    rest = [o for k in state.objects.values() for o in k.values() if (o.kind, o.id) not in keep]
    return State.of([*rest, *objs])


def open_b(state: State) -> State:
    """Port b without port security: it takes frames for a MAC learned for it."""
    return with_(state, state.get("port", "b").changed(port_security=False))


def resolve_flows(lflows: list[Any], kind: str = "neighbour") -> list[Any]:
    return [lf for lf in lflows if lf.owner[0] == kind and stage_of(lf.flow.table) == "lr_in_arp_resolve"]  # fmt: skip


def test_a_binding_resolves_its_address_out_of_its_interface_below_the_ports() -> None:
    st = with_(model(ONE), learned("10.0.2.77"), learned("fd00:2::77"))
    lflows = Compiler().compile(st)
    mine = resolve_flows(lflows)
    assert len(mine) == 2
    ports = [lf.flow.priority for lf in resolve_flows(lflows, "port")]
    assert ports and all(lf.flow.priority == neighbour.PRIORITY < min(ports) for lf in mine)
    f4 = next(lf.flow for lf in mine if "10.0.2.77" in lf.rule)
    assert "router r: 10.0.2.77 learned at 02:00:00:00:02:77" in f4.origin
    assert f4.match.get("reg7") == (3, 0xFFFFFFFF)  # out of s2's interface
    assert f4.match.get("reg0") == (0, 0xFFFFFFFF)  # the destination itself
    assert f4.match.get("ipv4_dst") == (0x0A00024D, 0xFFFFFFFF)
    f6 = next(lf.flow for lf in mine if "fd00:2::77" in lf.rule)
    assert f6.match.get("reg7") == (4, 0xFFFFFFFF)


def test_a_learned_address_is_reached_and_a_port_always_wins() -> None:
    st = open_b(model(ONE))
    st = with_(st, learned("10.0.2.77", MAC["b"]), learned("fd00:2::77", MAC["b"]),
               learned(IP4["b"], LEARNED))  # fmt: skip
    rig = Rig(st)
    rig.send("a", ping4("a", "10.0.2.77"))
    (f,) = rig.got("b")
    assert (f.src, f.dst, f[IP].dst) == (GW_MAC["s2"], MAC["b"], "10.0.2.77")
    rig.send("a", ping6("a", "fd00:2::77"))
    (g,) = rig.got("b")
    assert (g.dst, g[IPv6].dst) == (MAC["b"], "fd00:2::77")
    rig.send("a", ping4("a", IP4["b"]))  # b's own address: the port's MAC, not the learned
    (h,) = rig.got("b")
    assert h.dst == MAC["b"]
    assert not rig.packet_ins


def test_a_static_next_hop_is_resolved_by_its_binding() -> None:
    st = open_b(model(ONE, routes=[Route(cidr="172.16.0.0/16", nexthop="10.0.2.254")]))
    rig = Rig(with_(st, learned("10.0.2.254", MAC["b"])))
    rig.send("a", ping4("a", "172.16.3.4"))
    (f,) = rig.got("b")
    assert (f.dst, f[IP].dst, f[IP].ttl) == (MAC["b"], "172.16.3.4", 63)
    # without the binding: to the controller, the punt naming the next hop's address
    rig = Rig(st)
    rig.send("a", ping4("a", "172.16.3.4"))
    assert not rig.got("b")
    (pi,) = rig.packet_ins
    p = neighbour.punts(rig.lflows)[pi.cookie]
    assert (p.reason, p.nexthop, p.interface) == ("resolve", "10.0.2.254", 3)


def test_one_bindings_change_costs_one_builder_and_a_refresh_costs_none() -> None:
    base = model(ONE)
    n1, n2 = learned("10.0.2.77"), learned("10.0.2.78")
    c = Compiler()
    before = c.compile(with_(base, n1, n2))
    c.compile(with_(base, n1, n2.changed(seen_at=99.0)))
    assert c.recompiled == 0  # only seen_at: nothing the builder read
    after = c.compile(with_(base, n1, n2.changed(mac="02:00:00:00:02:99")))
    assert c.recompiled == 1
    gone = {lf.flow for lf in before} - {lf.flow for lf in after}
    assert {stage_of(f.table) for f in gone} == {"lr_in_arp_resolve"} and len(gone) == 1


def test_a_binding_its_router_cannot_use_makes_no_flows() -> None:
    st = with_(model(ONE), learned("10.0.9.9"), learned("10.0.2.77", network="n1"))
    assert resolve_flows(Compiler().compile(st)) == []
    down = model(ONE, admin_up=False)
    assert resolve_flows(Compiler().compile(with_(down, learned("10.0.2.77")))) == []


def test_arp_and_neighbour_discovery_at_an_interface_go_to_the_controller_to_learn() -> None:
    rig = Rig(model(ONE))
    reply = Ether(src=MAC["b"], dst=GW_MAC["s2"]) / ARP(op=2, hwsrc=MAC["b"], psrc=IP4["b"], pdst="10.0.2.1")  # fmt: skip
    rig.send("b", bytes(reply))
    (pi,) = rig.packet_ins
    p = neighbour.punts(rig.lflows)[pi.cookie]
    assert (p.reason, p.router, p.interface, p.cidr, p.address) == ("learn", "r", 3, "10.0.2.0/24", "10.0.2.1")  # fmt: skip
    assert Ether(pi.frame)[ARP].psrc == IP4["b"]
    assert not rig.got("a") and not rig.got("b")
