"""A router's effective routing table, and the compile of a router as the model changes."""

from __future__ import annotations

from typing import Any

from tests.unit.compiler.test_router import IP4, MAC, TWO, model
from vnet.compiler import Compiler
from vnet.model.objects import Route, Router, RouterInterface
from vnet.model.routing import NextHop, table
from vnet.model.rules import State
from vnet.pipeline.ofctl import format_flow


def _with(st: State, obj: Any) -> State:
    out = st.copy()
    out.objects[obj.kind][obj.id] = obj
    return out


def test_connected_static_and_ecmp_routes_with_their_provenance() -> None:
    routes = [
        Route(cidr="172.16.0.0/16", nexthop=IP4["b"]),
        Route(cidr="172.16.0.0/16", nexthop=IP4["a"]),
        Route(cidr="172.16.5.0/24", nexthop=IP4["b"]),
        Route(cidr="0.0.0.0/0", nexthop=IP4["a"]),
        Route(cidr="10.0.2.0/24", nexthop=IP4["a"]),  # a connected prefix: shadowed
        Route(cidr="192.168.0.0/16", nexthop="10.0.9.9"),  # on no interface
        Route(cidr="fd00:99::/48", nexthop="fd00:2::11"),
    ]
    st = model(TWO, routes=routes)
    r = st.get("router", "r")
    t = {(e.cidr, e.kind): e for e in table(st, r)}
    # per family, longest prefix first
    assert [e.cidr for e in table(st, r)] == [
        "10.0.1.0/24", "10.0.2.0/24", "10.0.2.0/24", "172.16.5.0/24", "172.16.0.0/16",
        "192.168.0.0/16", "0.0.0.0/0", "fd00:1::/64", "fd00:2::/64", "fd00:99::/48",
    ]  # fmt: skip
    c = t[("10.0.1.0/24", "connected")]
    assert c.nexthops == (NextHop(1, None, 0),) and c.origin == ("router r interfaces[0] (subnet s1)",)  # fmt: skip
    assert t[("fd00:2::/64", "connected")].nexthops == (NextHop(4, None, 0),)
    # next hops numbered from 1 in address order: a's, then b's; IPv6 after
    ecmp = t[("172.16.0.0/16", "static")]
    assert ecmp.nexthops == (NextHop(1, IP4["a"], 1), NextHop(3, IP4["b"], 2))
    assert ecmp.origin == ("router r routes[0] (via 10.0.2.11)", "router r routes[1] (via 10.0.1.10)")  # fmt: skip
    assert t[("0.0.0.0/0", "static")].nexthops == (NextHop(1, IP4["a"], 1),)
    shadowed = t[("10.0.2.0/24", "static")]
    assert not shadowed.active and "shadowed by the connected route" in shadowed.note
    bad = t[("192.168.0.0/16", "static")]
    assert not bad.active and "10.0.9.9 is on none of the router's subnets" in bad.note
    assert t[("fd00:99::/48", "static")].nexthops == (NextHop(4, "fd00:2::11", 4),)


def test_a_next_hop_that_is_the_routers_own_address_is_not_installed() -> None:
    st = model(TWO, routes=[Route(cidr="172.16.0.0/16", nexthop="10.0.1.1")])
    (e,) = [e for e in table(st, st.get("router", "r")) if e.kind == "static"]
    assert not e.active and "the router's own address" in e.note


def test_an_interface_on_a_missing_subnet_is_left_out() -> None:
    st = model(TWO)
    r = st.get("router", "r")
    gone = RouterInterface(subnet="nope", mac="0a:00:00:00:09:09", tunnel_key=9)
    st = _with(st, r.model_copy(update={"interfaces": [*r.interfaces, gone]}))
    assert len(table(st, st.get("router", "r"))) == 4


def test_a_routers_change_recompiles_the_router_and_a_ports_change_only_that_port() -> None:
    st = model(TWO)
    comp = Compiler()
    comp.compile(st)
    r: Router = st.get("router", "r")
    routed = _with(st, r.model_copy(update={"routes": [Route(cidr="172.16.0.0/16", nexthop=IP4["b"])]}))  # fmt: skip
    after = comp.compile(routed)
    # the router's flows, and the ports whose address became a next hop (b, on n2)
    assert comp.recompiled == 2
    assert sorted(lf.order for lf in after) == sorted(lf.order for lf in Compiler().compile(routed))
    b = routed.get("port", "b")
    moved = _with(routed, b.model_copy(update={"mac": "02:00:00:00:02:bb"}))
    again = comp.compile(moved)  # a port's field alone: the quick path
    fresh = Compiler().compile(moved)
    assert [(lf.flow, lf.flow.cookie) for lf in again] == [
        (lf.flow, lf.flow.cookie) for lf in fresh
    ]
    resolved = [lf for lf in again if lf.owner == ("port", "b") and "lr_in_arp_resolve" in lf.flow.origin]  # fmt: skip
    text = [format_flow(lf.flow) for lf in resolved]
    assert len(text) == 3 and all("02:00:00:00:02:bb->dl_dst" in t for t in text)
    assert MAC["b"] not in "".join(text)
