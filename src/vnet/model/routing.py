"""A router's effective routing table: what it routes by, and why each route is there.

One pure function of the model (`table`) serves the compiler, which turns
each route into flows of the router's `lr_in_ip_routing` stage, and the
operator's view (`vnet get routes`), which shows the same table with each
route's provenance -- so what is shown is what is installed.

The table is made of
- connected routes: each interface's subnet, reached directly (the next hop
  is the destination itself);
- the gateway's subnets (an external network's: `Router.gateway`), connected too,
  by the gateway's address on each (IPv4 `ip`, IPv6 `ip6`);
- static routes (`Router.routes`): a CIDR via a next hop, which must be an
  address on one of the router's subnets -- the route goes out of that
  subnet's interface.  Several next hops for one CIDR make one route with
  several next hops: equal-cost multipath (ECMP).

Lookups are longest prefix first.  A static route for exactly a connected
prefix is shadowed by it (shown, not installed), as a connected route wins
on Linux and in OVN.  A static route whose next hop no interface reaches, or
that is the router's own address, is shown as unusable (admission refuses
both; the table says so rather than guess).

Interfaces are numbered by their position in `Router.interfaces`, from 1:
the router's own port numbers in its pipeline (`reg6`/`reg7` there); the
gateway's IPv4 and IPv6 sides come after them (n + 1, n + 2), one port on
the external network with both addresses.  An
interface's `tunnel_key` is its port number in its *network* -- unique in
that network only, so two interfaces of one router may share one.  Next
hops of static routes are numbered from 1 (`reg0` in the pipeline; 0 is
"the destination itself"), distinct addresses in address order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .objects import Router, Subnet

if TYPE_CHECKING:
    from .rules import State

__all__ = ["Interface", "NextHop", "RouteEntry", "interfaces", "table"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Interface:
    """One interface of a router, with what its subnet says of it."""

    number: int  # the router's port number: position in `interfaces`, from 1
    subnet: str  # subnet id
    subnet_name: str
    network: str  # network id
    cidr: str
    address: str  # the subnet's gateway: the router's address there
    family: int  # 4 | 6
    mac: str | None  # filled in on admission
    tunnel_key: int | None  # the router port's number in the network; on admission
    gateway: bool = False  # the router's gateway (on an external network), not an interface

    @property
    def prefix(self) -> IPNetwork:
        return ipaddress.ip_network(self.cidr)


@dataclass(frozen=True)
class NextHop:
    """Where a route sends: out of `interface`, to `ip` (None: the destination itself)."""

    interface: int  # the out interface's number
    ip: str | None
    id: int  # 0 for the destination itself, else the next hop's number (`reg0`)


@dataclass(frozen=True)
class RouteEntry:
    """One prefix of the table, with its next hops and where it came from."""

    cidr: str
    family: int
    kind: str  # connected | static
    nexthops: tuple[NextHop, ...]  # several: ECMP; none: not installed (see `note`)
    origin: tuple[str, ...]  # provenance: the object and field of each contribution
    note: str = ""  # why a route is not installed (shadowed, unusable)

    @property
    def prefix(self) -> IPNetwork:
        return ipaddress.ip_network(self.cidr)

    @property
    def active(self) -> bool:
        return bool(self.nexthops)


def interfaces(state: State, router: Router) -> list[Interface]:
    """The router's interfaces whose subnet exists, numbered by position from 1."""
    out = []
    for i, itf in enumerate(router.interfaces):
        sub: Subnet | None = state.get("subnet", itf.subnet)
        if sub is None or sub.gateway is None:
            continue
        here = Interface(
            number=i + 1,
            subnet=sub.id,
            subnet_name=sub.name,
            network=sub.network,
            cidr=sub.cidr,
            address=sub.gateway,
            family=sub.ip_version,
            mac=itf.mac,
            tunnel_key=itf.tunnel_key,
        )
        out.append(here)
    g = router.gateway
    if g is None:
        return out
    n = len(router.interfaces)
    for k, a in enumerate((g.ip, g.ip6)):
        sub = next((s for s in state.subnets_of(g.network) if a and s.usable(a)), None)
        if a is None or sub is None:
            continue
        out.append(Interface(
            number=n + 1 + k, subnet=sub.id, subnet_name=sub.name, network=sub.network,
            cidr=sub.cidr, address=a, family=sub.ip_version, mac=g.mac,
            tunnel_key=g.tunnel_key, gateway=True,
        ))  # fmt: skip
    return out


def _order(e: RouteEntry) -> tuple[int, int, int, int]:
    p = e.prefix
    return (e.family, -p.prefixlen, int(p.network_address), e.kind != "connected")


def table(state: State, router: Router) -> list[RouteEntry]:
    """The router's effective routing table: per family, longest prefix first."""
    return build(router, interfaces(state, router))


def build(router: Router, itfs: Sequence[Interface]) -> list[RouteEntry]:
    """`table` from the interfaces already looked up (what the compiler has at hand)."""
    where = f"router {router.name}"
    out: list[RouteEntry] = []
    connected: dict[IPNetwork, RouteEntry] = {}
    for itf in itfs:
        e = RouteEntry(
            itf.cidr, itf.family, "connected", (NextHop(itf.number, None, 0),),
            (f"{where} gateway (subnet {itf.subnet_name})" if itf.gateway
             else f"{where} interfaces[{itf.number - 1}] (subnet {itf.subnet_name})",),
        )  # fmt: skip
        connected[itf.prefix] = e
        out.append(e)
    own = {ipaddress.ip_address(i.address) for i in itfs}
    hops: dict[IPNetwork, list[tuple[int, str]]] = {}  # prefix -> (route index, next hop)
    for i, r in enumerate(router.routes):
        hops.setdefault(ipaddress.ip_network(r.cidr), []).append((i, r.nexthop))
    usable = sorted(
        {ipaddress.ip_address(h) for rs in hops.values() for _, h in rs} - own,
        key=lambda a: (a.version, int(a)),
    )
    number = {a: n for n, a in enumerate(usable, 1)}
    for prefix, rs in hops.items():
        origin = tuple(f"{where} routes[{i}] (via {h})" for i, h in rs)
        family = prefix.version
        if prefix in connected:
            out.append(RouteEntry(str(prefix), family, "static", (), origin,
                                  f"shadowed by the connected route {prefix}"))  # fmt: skip
            continue
        nh: list[NextHop] = []
        bad: list[str] = []
        for _, h in rs:
            a = ipaddress.ip_address(h)
            via = next((x for x in itfs if x.family == a.version and a in x.prefix), None)
            if a in own:
                bad.append(f"next hop {h} is the router's own address")
            elif via is None:
                bad.append(f"next hop {h} is on none of the router's subnets")
            elif all(n.ip != h for n in nh):
                nh.append(NextHop(via.number, h, number[a]))
        nh.sort(key=lambda n: n.id)
        out.append(RouteEntry(str(prefix), family, "static", tuple(nh), origin, "; ".join(bad)))
    out.sort(key=_order)
    return out
