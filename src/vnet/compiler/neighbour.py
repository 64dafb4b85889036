"""A router's neighbours that are not model ports: resolved by the controller, learned,
and compiled from the store (OVN's put_arp / put_nd, MAC_Binding, lr_in_arp_request).

`lr_in_arp_resolve` knows the MAC of every port of a router's networks from
the model (`router.port_flows`).  An upstream router or a server outside on
an external network is no port, so the router learns its MAC, as OVN's does:

- Unresolved: a next hop no flow resolves goes to the controller
  (`unresolved`): one flow per out interface for the destination itself
  (`reg7` = the interface, `reg0` = 0: the packet's destination is the
  address to resolve) and one per static next hop (`reg0` = its id: the
  `Resolve` punt carries its address).  The controller sends an ARP request
  or a neighbour solicitation (to the solicited-node group) from the out
  interface's MAC and address into that interface's network, on the chassis
  that routed the packet; the packet itself is dropped -- a later one finds
  the binding.  A per-family drop below them catches what they do not
  (a next hop number no route has any more).
- Learning: ARP (requests, replies, gratuitous) reaching a router
  interface, and neighbour advertisements and solicitations, go to the
  controller (`learning`, in `lr_in_ip_input` above the martian and
  router-address drops: an advertisement may come from a link-local
  source), with a `Learn` punt naming the router and interface; the
  controller keeps what it hears of addresses on the interface's subnet
  (never the router's own) as a `neighbour` in the store.  The switch
  answers ARP and solicitations for the router's addresses itself
  (`router._switch_side`), so those never reach the router: what it learns
  from is the replies to its own requests and what is addressed to its MAC.
- Compiled: each stored binding is one datapath of the `neighbours` kind
  (`Kind`), built on its own -- one binding's change costs one builder, and a
  refresh that changes only its `seen_at` costs none (the builder never
  reads it).  For each interface of its router on its network whose subnet
  holds the address: `reg7` = that interface, `reg0` = 0, the destination =
  the address -> its MAC; for each static next hop that is the address:
  `reg7`, `reg0` = its id -> its MAC.  Priority `PRIORITY`, below every
  model port's (100 and up): a port always wins over what was learned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model.l3 import ROUTER_BASE
from ..model.neighbour import on_interface
from ..model.objects import Neighbour, Router
from ..model.routing import Interface, RouteEntry, build, interfaces
from ..model.rules import State
from ..pipeline.actions import OFPP_CONTROLLER, Output, SetField
from ..pipeline.fields import lookup
from .logical import Kind, LFlow, _Emit, datapath_kind
from .stages import NEXT, REG_INPORT, REG_NEXTHOP, REG_OUTPORT

__all__ = ["PRIORITY", "Learn", "Resolve", "learning", "punts", "unresolved"]

ETH_IP, ETH_ARP, ETH_IP6 = 0x0800, 0x0806, 0x86DD
_ETH = {4: ETH_IP, 6: ETH_IP6}
_DST = {4: "ipv4_dst", 6: "ipv6_dst"}
_ETH_DST = lookup("eth_dst").index
PRIORITY = 80  # a learned binding's flows: below every model port's (100 + prefix length)
ND_NS, ND_NA = 135, 136


@dataclass(frozen=True)
class Resolve:
    """A router's next hop no flow resolves: what the controller asks the network for."""

    reason: str  # "resolve" (the controller's own probe of a learned binding: "probe")
    router: str  # id
    router_name: str
    interface: int  # the out interface's number
    network: str  # its network (id)
    subnet: str
    cidr: str
    family: int  # 4 | 6
    mac: str  # the out interface's MAC: the request's source
    address: str  # its address: the request's sender address
    port_key: int  # the router's port in the network (its tunnel_key): where it enters
    nexthop: str | None  # a static route's next hop; None: the packet's destination


@dataclass(frozen=True)
class Learn:
    """ARP or neighbour discovery reaching a router's interface: what it may learn from."""

    reason: str  # "learn"
    router: str
    router_name: str
    interface: int
    network: str
    subnet: str
    cidr: str  # only addresses on it are learned
    family: int
    address: str  # the router's own there: never learned


def punts(lflows: Sequence[LFlow]) -> dict[int, Resolve | Learn]:
    """cookie -> Resolve or Learn, for every flow of this module that sends to the
    controller."""
    return {lf.flow.cookie: lf.punt for lf in lflows if isinstance(lf.punt, Resolve | Learn)}


def _prefix(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return int(net.network_address), int(net.netmask)


def _me(itf: Interface) -> str:
    return f"interface {itf.number} (subnet {itf.subnet_name})"


def unresolved(
    e: _Emit, r: Router, live: Sequence[Interface], routes: Sequence[RouteEntry]
) -> None:
    """`lr_in_arp_resolve`: what no port's or learned binding's flow resolves, to the
    controller -- per out interface, and per static next hop with its address."""
    at = "lr_in_arp_resolve"
    by_no = {i.number: i for i in live}

    def punt(itf: Interface, hop: str | None) -> Resolve:
        return Resolve("resolve", r.id, r.name, itf.number, itf.network, itf.subnet, itf.cidr,
                       itf.family, itf.mac or "", itf.address, itf.tunnel_key or 0, hop)  # fmt: skip

    for itf in live:
        fam = itf.family
        e(at, 2, f"{_me(itf)}: IPv{fam} destination unknown: to the controller (resolve)",
          {REG_OUTPORT: itf.number, REG_NEXTHOP: 0, "eth_type": _ETH[fam]},
          apply=[Output(OFPP_CONTROLLER)], punt=punt(itf, None))  # fmt: skip
    hops = sorted({(h.id, h.ip, h.interface) for rt in routes if rt.active for h in rt.nexthops
                   if h.ip and h.interface in by_no})  # fmt: skip
    for hid, ip, no in hops:
        itf = by_no[no]
        e(at, 2, f"next hop {ip} unknown: to the controller (resolve)",
          {REG_OUTPORT: no, REG_NEXTHOP: hid}, apply=[Output(OFPP_CONTROLLER)],
          punt=punt(itf, ip))  # fmt: skip
    for fam in sorted({i.family for i in live}):
        e(at, 1, f"IPv{fam} next hop unknown: drop", {"eth_type": _ETH[fam]})


def learning(e: _Emit, r: Router, live: Sequence[Interface]) -> None:
    """`lr_in_ip_input`: ARP and neighbour discovery at each interface to the controller
    (learned from, then dropped); ARP at no interface dropped."""
    at = "lr_in_ip_input"
    for itf in live:
        p = Learn("learn", r.id, r.name, itf.number, itf.network, itf.subnet, itf.cidr,
                  itf.family, itf.address)  # fmt: skip
        mine = {REG_INPORT: itf.number}
        if itf.family == 4:
            e(at, 110, f"{_me(itf)}: ARP: to the controller (learn)",
              {**mine, "eth_type": ETH_ARP}, apply=[Output(OFPP_CONTROLLER)], punt=p)  # fmt: skip
            continue
        for t, what in ((ND_NA, "neighbour advertisement"), (ND_NS, "neighbour solicitation")):
            e(at, 110, f"{_me(itf)}: {what}: to the controller (learn)",
              {**mine, "eth_type": ETH_IP6, "ip_proto": 58, "icmpv6_type": t},
              apply=[Output(OFPP_CONTROLLER)], punt=p)  # fmt: skip
    e(at, 100, "ARP at no interface: dropped", {"eth_type": ETH_ARP})


# -- the learned bindings as flows ----------------------------------------------------------
@dataclass(frozen=True)
class _Datapath:
    id: str


@dataclass(frozen=True)
class At:
    """Where a binding applies in its router (what its builder is given beside it)."""

    router: str  # id
    name: str
    key: int  # the router's datapath key
    interfaces: tuple[int, ...]  # the interfaces whose subnet holds the address
    hops: tuple[tuple[int, int], ...]  # (next hop id, out interface) of static routes via it


def _objects(state: State) -> list[tuple[str, tuple[Any, ...], tuple[Any, ...]]]:
    """Each binding its router can use, with where it applies there."""
    by_router: dict[str, list[Neighbour]] = {}
    for n in state.all("neighbour"):
        by_router.setdefault(n.router, []).append(n)
    out: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = []
    for rid, ns in sorted(by_router.items()):
        r = state.get("router", rid)
        if not isinstance(r, Router) or r.tunnel_key is None or not r.admin_up:
            continue
        live = [i for i in interfaces(state, r) if i.mac and i.tunnel_key]
        hops = {(h.id, h.ip, h.interface) for rt in build(r, live) for h in rt.nexthops if h.ip}
        for n in ns:
            itf = on_interface(state, r, n.network, n.ip)
            if itf is None or not itf.mac or not itf.tunnel_key:
                continue
            a = ipaddress.ip_address(n.ip)
            nos = tuple(sorted(i.number for i in live if i.network == n.network
                               and i.family == a.version and a in i.prefix))  # fmt: skip
            via = tuple(sorted((hid, no) for hid, ip, no in hops
                               if ipaddress.ip_address(ip or "0.0.0.0") == a))  # fmt: skip
            at = At(r.id, r.name, ROUTER_BASE | r.tunnel_key, nos, via)
            out.append((n.id, (n,), (at,)))
    return out


def binding_flows(n: Neighbour, at: At) -> list[LFlow]:
    """One learned binding's `lr_in_arp_resolve` flows in its router."""
    e = _Emit("neighbour", n, _Datapath(at.router), key=at.key)
    a = ipaddress.ip_address(n.ip)
    mac = int(n.mac.replace(":", ""), 16)
    fam = a.version
    set_mac = [SetField(_ETH_DST, mac)]
    full = (1 << (32 if fam == 4 else 128)) - 1
    for no in at.interfaces:
        e("lr_in_arp_resolve", PRIORITY, f"router {at.name}: {a} learned at {n.mac}",
          {REG_OUTPORT: no, REG_NEXTHOP: 0, "eth_type": _ETH[fam], _DST[fam]: (int(a), full)},
          apply=set_mac, goto=NEXT)  # fmt: skip
    for hid, no in at.hops:
        e("lr_in_arp_resolve", PRIORITY, f"router {at.name}: next hop {a} learned at {n.mac}",
          {REG_OUTPORT: no, REG_NEXTHOP: hid}, apply=set_mac, goto=NEXT)  # fmt: skip
    return e.out


NEIGHBOURS = datapath_kind(
    Kind("neighbour", _objects, binding_flows, lambda state: {}, lambda *a: [])
)
