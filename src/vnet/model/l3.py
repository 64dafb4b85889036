"""Routers and floating IPs: what they need of the rest of the model.

A router is a logical datapath whose ports sit on networks: one per
interface (on the interface's subnet's network, with the subnet's `gateway`
as its address) and one for its gateway (on an external network).  Each such
port is completed on admission as a port is: a `mac` unique in the network,
derived from the router's id and the subnet's id (the gateway's: the
network's id) -- `state.derived_mac(router_id, subnet_or_network_id, salt)`,
the salt counting up from 0 past MACs taken in that network -- and a
`tunnel_key`, the port's number in the network, taken from MAX_PORT_KEY
downward (ports take theirs from 1 upward, so the two meet only in a full
network).  The router itself gets the smallest free `tunnel_key`; its
datapath key is `ROUTER_BASE | tunnel_key`, apart from every network's VNI.
A gateway without `ip` gets the lowest free address of its network's
subnets (IPv4 first), a floating IP without one the lowest free IPv4
address -- never a port's, a subnet's gateway (the upstream router), another
gateway's or another floating IP's.  What was allocated stays when a request
leaves it out (an interface on the same subnet keeps its MAC and key, a
gateway on the same network its address), so re-applying a file changes
nothing.

Refused, naming the field: an interface on another tenant's subnet, on an
external network, on a subnet another router has (a subnet has one router),
or overlapping another of the router's subnets (its gateway's included); a
gateway on a network that is not external, on a chassis without an uplink
for the network's physnet; a static route whose next hop is on none of the
router's subnets, or is the router's own address; a floating IP on a
network that is not external, outside its IPv4 subnets or in use, for a
port of another tenant or one no router of its tenant routes to that
network (an IPv4 address on a subnet of a router whose gateway is there).
Floating IPs are IPv4: IPv6 is routed without translation.

What routers and floating IPs refer to is not deleted from under them,
cascading or not (`dangling`): they are changed first, on purpose.  Other
kinds' admission asks here what routers and floating IPs hold of a network
(`legs`, `held_addresses`) so a port never takes a router port's key or MAC
or a gateway's, floating IP's or chassis' BGP speaker's address
(`Chassis.bgp`).  SLAAC subnets (`slaac`, `dhcpv6-stateless`) give a port
the EUI-64 address of its MAC (`eui64`).  A router's gateway is active on
the first of its gateway chassis that is live (`active_gateway`, from what
chassis' BFD sessions report: `liveness`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .liveness import down
from .objects import (
    MAX_PORT_KEY,
    MAX_ROUTER_KEY,
    Chassis,
    FloatingIP,
    Gateway,
    Network,
    Port,
    Resource,
    Router,
    RouterInterface,
    Subnet,
)
from .state import Change, ModelError, State, allocate, derived_mac, in_tenant

__all__ = [
    "ROUTER_BASE",
    "SLAAC",
    "Leg",
    "active_gateway",
    "admit_floating_ip",
    "admit_router",
    "chassis_uplinks",
    "dangling",
    "eui64",
    "gateway_users",
    "held_addresses",
    "interface_subnets",
    "legs",
    "legs_by_network",
    "network_change",
    "physnet_users",
    "port_floating_ips",
    "resolve_refs",
    "routers_of",
    "subnet_change",
]

# a router's datapath key (`metadata`): apart from every network's VNI (< 2^24)
ROUTER_BASE = 1 << 32
# IPv6 modes whose workloads take their address by SLAAC: the port's is its MAC's EUI-64
SLAAC = ("slaac", "dhcpv6-stateless")


def eui64(cidr: str, mac: str) -> str:
    """The SLAAC address of `mac` in the /64 `cidr` (RFC 4291 appendix A: ff:fe in the
    middle of the MAC, the universal/local bit flipped)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes((b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]))
    return str(ipaddress.ip_network(cidr).network_address + int.from_bytes(iid, "big"))


@dataclass(frozen=True)
class Leg:
    """A router's logical port on a network: an interface (on a subnet) or its gateway."""

    router: Router
    loc: tuple[str | int, ...]  # ("interfaces", i) or ("gateway",)
    mac: str | None
    tunnel_key: int | None
    ip: str | None

    def __str__(self) -> str:
        what = "gateway" if self.loc == ("gateway",) else f"interface {self.loc[1]}"
        return f"router {self.router.name!r}'s {what}"


def active_gateway(router: Router, state: State) -> str | None:
    """The chassis (id) where `router`'s gateway is active -- the only one that routes out
    of it and answers for its address: the first of its gateway chassis that is live
    (`liveness.down`: no chassis' BFD sees it up though some report a session to it);
    the first of them when none is (nowhere better to go); None without a gateway or
    gateway chassis."""
    g = router.gateway
    if g is None or not g.chassis:
        return None
    return next((c for c in g.chassis if not down(state, c)), g.chassis[0])


def _routers(state: State) -> Iterable[Router]:
    return state.objects.get("router", {}).values()  # type: ignore[return-value]


def _fips(state: State) -> Iterable[FloatingIP]:
    return state.objects.get("floating_ip", {}).values()  # type: ignore[return-value]


def legs(state: State, network_id: str, skip: str | None = None) -> list[Leg]:
    """The routers' ports on network `network_id` (but router `skip`'s)."""
    return legs_by_network(state, skip).get(network_id, [])


def legs_by_network(state: State, skip: str | None = None) -> dict[str, list[Leg]]:
    """Network id -> the routers' ports on it (but router `skip`'s), in one pass."""
    out: dict[str, list[Leg]] = {}
    for r in _routers(state):
        if r.id == skip:
            continue
        for i, itf in enumerate(r.interfaces):
            sub = state.get("subnet", itf.subnet)
            if sub is not None:
                leg = Leg(r, ("interfaces", i), itf.mac, itf.tunnel_key, sub.gateway)
                out.setdefault(sub.network, []).append(leg)
        g = r.gateway
        if g is not None:
            out.setdefault(g.network, []).append(Leg(r, ("gateway",), g.mac, g.tunnel_key, g.ip))
    return out


def held_addresses(state: State, network_id: str, skip: Resource | None = None) -> dict[str, str]:
    """Addresses of a network that routers' gateways and floating IPs hold, and by what
    (`skip`'s own are not counted)."""
    out: dict[str, str] = {}
    mine = skip.id if isinstance(skip, Router | FloatingIP) else None
    for r in _routers(state):
        g = r.gateway
        if g is not None and g.network == network_id and r.id != mine:
            for a in (g.ip, g.ip6):
                if a is not None:
                    out[a] = f"router {r.name!r}'s gateway"
    for f in _fips(state):
        if f.network == network_id and f.ip is not None and f.id != mine:
            out[f.ip] = f"floating IP {f.name!r}"
    out.update(_speakers(state, network_id))
    return out


def _speakers(state: State, network_id: str) -> dict[str, str]:
    """The chassis' BGP speakers' addresses on a network's subnets (its physnet's)."""
    net = state.get("network", network_id)
    if not isinstance(net, Network) or net.physnet is None:
        return {}
    cidrs = [ipaddress.ip_network(s.cidr) for s in state.subnets_of(network_id)]
    out: dict[str, str] = {}
    for ch in state.objects.get("chassis", {}).values():
        up = ch.bgp.physnets.get(net.physnet) if isinstance(ch, Chassis) and ch.bgp else None
        for a in up.addresses if up is not None else ():
            if any(ipaddress.ip_address(a) in c for c in cidrs):
                out[a] = f"chassis {ch.name!r}'s BGP speaker"
    return out


def _in_use(state: State, net: Network, skip: Resource) -> dict[str, str]:
    """Every address of `net` something has: ports, subnets' gateways, gateways, floating IPs."""
    out = {s.gateway: f"subnet {s.name!r}'s gateway" for s in state.subnets_of(net.id) if s.gateway}
    for p in state.objects.get("port", {}).values():
        if isinstance(p, Port) and p.network == net.id:
            out.update((ip, f"port {p.name!r}") for ip in p.ips)
    out.update(held_addresses(state, net.id, skip))
    return out


def routers_of(state: State, port: Port, network_id: str) -> list[Router]:
    """The routers that take `port`'s IPv4 traffic to external network `network_id`: an
    interface on a subnet where the port has an IPv4 address, a gateway on the network."""
    subs = {f.subnet for f in port.fixed_ips if f.ip and ipaddress.ip_address(f.ip).version == 4}
    return [
        r
        for r in _routers(state)
        if r.gateway is not None
        and r.gateway.network == network_id
        and any(i.subnet in subs for i in r.interfaces)
    ]


# -- routers -----------------------------------------------------------------------------
def admit_router(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, Router)
    in_tenant(state, obj, old)
    prev = old if isinstance(old, Router) else None
    used = {r.tunnel_key: r for r in _routers(state) if r.id != obj.id}
    key = obj.tunnel_key
    if key is not None and key in used:
        raise ModelError("conflict", ("tunnel_key",), f"{key} is router {used[key].name!r}'s")
    if key is None and prev is not None and prev.tunnel_key not in used:
        key = prev.tunnel_key
    if key is None:
        key = next((k for k in range(1, MAX_ROUTER_KEY + 1) if k not in used), None)
        if key is None:
            raise ModelError("conflict", ("tunnel_key",), "every router key is in use")
    room = _Room(state, obj)
    interfaces, subs = _interfaces(state, obj, prev, room)
    gateway, ext = _gateway(state, obj, prev, subs, room) if obj.gateway else (None, [])
    connected = [(s, s.gateway) for s in subs]
    connected += [(s, gateway.ip if gateway else None) for s in ext]
    _routes(obj, connected)
    new = obj.changed(
        tunnel_key=key,
        interfaces=[i.model_dump() for i in interfaces],
        gateway=gateway.model_dump() if gateway else None,
    )
    assert isinstance(new, Router)
    if prev is not None:
        _keeps_floating_ips(state, new, prev)
    return new


class _Room:
    """The MACs and keys a router's ports must keep off, per network: ports', other
    routers', and those this router took so far (its IPv4 and IPv6 interfaces on one
    network are two ports).  Indexed once per admission: a model of many routers."""

    def __init__(self, state: State, router: Router) -> None:
        self.state, self.router = state, router
        self.taken: dict[str, tuple[dict[str, str], dict[int, str]]] = {}
        self.ports: dict[str, list[Port]] | None = None
        self.legs: dict[str, list[Leg]] = {}

    def of(self, net_id: str) -> tuple[dict[str, str], dict[int, str]]:
        if net_id in self.taken:
            return self.taken[net_id]
        if self.ports is None:
            self.ports = {}
            for p in self.state.objects.get("port", {}).values():
                assert isinstance(p, Port)
                self.ports.setdefault(p.network, []).append(p)
            self.legs = legs_by_network(self.state, skip=self.router.id)
        ports, others = self.ports.get(net_id, []), self.legs.get(net_id, [])
        macs = {p.mac: f"port {p.name!r}'s" for p in ports if p.mac}
        macs.update((leg.mac, f"{leg}'s") for leg in others if leg.mac)
        keys = {p.tunnel_key: f"port {p.name!r}'s" for p in ports if p.tunnel_key}
        keys.update((leg.tunnel_key, f"{leg}'s") for leg in others if leg.tunnel_key)
        self.taken[net_id] = (macs, keys)
        return macs, keys


def _port_on(
    net: Network,
    router: Router,
    loc: tuple[str | int, ...],
    given: tuple[str | None, int | None],
    was: tuple[str | None, int | None] | None,
    ref: str,
    room: _Room,
) -> tuple[str, int]:
    """The MAC and key of the router's port `loc` on `net`: as given (if free), else as
    it was (if still free), else derived / allocated."""
    macs, keys = room.of(net.id)
    mac, key = given
    if mac is not None and mac in macs:
        raise ModelError("conflict", (*loc, "mac"), f"{mac} is {macs[mac]} in network {net.name!r}")
    if key is not None and key in keys:
        raise ModelError(
            "conflict", (*loc, "tunnel_key"), f"{key} is {keys[key]} in network {net.name!r}"
        )
    if mac is None and was is not None and was[0] is not None and was[0] not in macs:
        mac = was[0]
    salt = 0
    while mac is None:
        mac = derived_mac(router.id, ref, salt)
        if mac in macs:
            mac, salt = None, salt + 1
    if key is None and was is not None and was[1] is not None and was[1] not in keys:
        key = was[1]
    if key is None:
        key = next((k for k in range(MAX_PORT_KEY, 0, -1) if k not in keys), None)
        if key is None:
            raise ModelError("conflict", (*loc, "tunnel_key"), f"network {net.name!r} is full")
    macs[mac] = keys[key] = f"router {router.name!r}'s {'.'.join(map(str, loc))}"
    return mac, key


def _interfaces(
    state: State, obj: Router, prev: Router | None, room: _Room
) -> tuple[list[RouterInterface], list[Subnet]]:
    before = {i.subnet: i for i in prev.interfaces} if prev is not None else {}
    owner = {i.subnet: r for r in _routers(state) if r.id != obj.id for i in r.interfaces}
    done: list[RouterInterface] = []
    subs: list[Subnet] = []
    for i, itf in enumerate(obj.interfaces):
        loc: tuple[str | int, ...] = ("interfaces", i)
        sub = state.get("subnet", itf.subnet)
        if sub is None:
            raise ModelError("invalid", (*loc, "subnet"), f"no subnet {itf.subnet!r}")
        assert isinstance(sub, Subnet)
        if sub.tenant != obj.tenant:
            raise ModelError(
                "invalid",
                (*loc, "subnet"),
                f"subnet {sub.name!r} is tenant {state._tenant_name(sub.tenant)!r}'s; "
                "a router's interfaces are on its own tenant's subnets",
            )
        if any(s.id == sub.id for s in subs):
            raise ModelError("invalid", (*loc, "subnet"), f"subnet {sub.name!r} is given twice")
        net = state.get("network", sub.network)
        assert isinstance(net, Network)
        if net.external:
            raise ModelError(
                "invalid",
                (*loc, "subnet"),
                f"subnet {sub.name!r} is on external network {net.name!r}: "
                "a router reaches an external network through its gateway",
            )
        if sub.id in owner:
            raise ModelError(
                "conflict",
                (*loc, "subnet"),
                f"subnet {sub.name!r} is on router {owner[sub.id].name!r}; a subnet has one router",
            )
        hit = _overlapping(sub, subs)
        if hit is not None:
            j, s = hit
            raise ModelError(
                "conflict",
                (*loc, "subnet"),
                f"subnet {sub.name!r} ({sub.cidr}) overlaps subnet {s.name!r} ({s.cidr}) "
                f"of interfaces.{j}",
            )
        was = before.get(sub.id)
        mac, key = _port_on(
            net, obj, loc, (itf.mac, itf.tunnel_key),
            (was.mac, was.tunnel_key) if was is not None else None, sub.id, room,
        )  # fmt: skip
        done.append(RouterInterface(subnet=sub.id, mac=mac, tunnel_key=key))
        subs.append(sub)
    return done, subs


def _overlapping(sub: Subnet, subs: list[Subnet]) -> tuple[int, Subnet] | None:
    """The first of `subs` (with its index) of `sub`'s family whose prefix overlaps it."""
    for j, s in enumerate(subs):
        if s.ip_version == sub.ip_version and s.network_obj.overlaps(sub.network_obj):
            return j, s
    return None


def _gateway(
    state: State, obj: Router, prev: Router | None, subs: list[Subnet], room: _Room
) -> tuple[Gateway, list[Subnet]]:
    g = obj.gateway
    assert g is not None
    loc: tuple[str | int, ...] = ("gateway",)
    net = state.get("network", g.network)
    if net is None:
        raise ModelError("invalid", (*loc, "network"), f"no network {g.network!r}")
    assert isinstance(net, Network)
    if not net.external:
        raise ModelError(
            "invalid",
            (*loc, "network"),
            f"network {net.name!r} is not external (external: true, on a physnet)",
        )
    ext = state.subnets_of(net.id)
    if not ext:
        raise ModelError(
            "conflict", (*loc, "network"), f"external network {net.name!r} has no subnet"
        )
    for s in ext:
        hit = _overlapping(s, subs)
        if hit is not None:
            j, sub = hit
            raise ModelError(
                "conflict",
                (*loc, "network"),
                f"its subnet {s.name!r} ({s.cidr}) overlaps subnet {sub.name!r} "
                f"({sub.cidr}) of interfaces.{j}",
            )
    was = prev.gateway if prev is not None and prev.gateway is not None else None
    if was is not None and was.network != net.id:
        was = None
    taken = _in_use(state, net, obj)
    ip = g.ip
    if ip is not None:
        if not any(s.usable(ip) for s in ext):
            cidrs = ", ".join(s.cidr for s in ext)
            raise ModelError(
                "invalid",
                (*loc, "ip"),
                f"{ip} is outside every subnet of network {net.name!r} ({cidrs})",
            )
        if ip in taken:
            raise ModelError("conflict", (*loc, "ip"), f"{ip} is in use by {taken[ip]}")
    elif was is not None and was.ip is not None and was.ip not in taken:
        ip = was.ip
    else:
        ip = next((a for s in ext if (a := allocate(s, taken)) is not None), None)
        if ip is None:
            raise ModelError("conflict", (*loc, "ip"), f"network {net.name!r} has no free address")
    ip6 = _gateway_ip6(g, was, ip, ext, {**taken, ip: f"router {obj.name!r}'s gateway"}, net)
    mac, key = _port_on(
        net, obj, loc, (g.mac, g.tunnel_key),
        (was.mac, was.tunnel_key) if was is not None else None, net.id, room,
    )  # fmt: skip
    seen: set[str] = set()
    for i, cid in enumerate(g.chassis):
        ch = state.get("chassis", cid)
        if ch is None:
            raise ModelError("invalid", (*loc, "chassis", i), f"no chassis {cid!r}")
        if ch.id in seen:
            raise ModelError("invalid", (*loc, "chassis", i), f"chassis {ch.name!r} is given twice")
        seen.add(ch.id)
        if net.physnet not in ch.physnets:
            has = ", ".join(sorted(ch.physnets)) or "none"
            raise ModelError(
                "invalid",
                (*loc, "chassis", i),
                f"chassis {ch.name!r} has no uplink for physnet {net.physnet!r} of network "
                f"{net.name!r} (its physnets: {has})",
            )
    done = Gateway.model_validate(
        {**g.model_dump(), "ip": ip, "ip6": ip6, "mac": mac, "tunnel_key": key,
         "chassis": list(g.chassis)}
    )  # fmt: skip
    return done, ext


def _gateway_ip6(
    g: Gateway, was: Gateway | None, ip: str, ext: list[Subnet], taken: dict[str, str],
    net: Network,
) -> str | None:  # fmt: skip
    """The gateway's IPv6 address, beside an IPv4 `ip`: as given, else as it was, else
    the lowest free one of the network's IPv6 subnets (none without one)."""
    v6 = [s for s in ext if s.ip_version == 6]
    loc = ("gateway", "ip6")
    if g.ip6 is not None:
        if ipaddress.ip_address(g.ip6).version != 6 or not any(s.usable(g.ip6) for s in v6):
            cidrs = ", ".join(s.cidr for s in v6) or "none"
            raise ModelError(
                "invalid", loc,
                f"{g.ip6} is outside every IPv6 subnet of network {net.name!r} ({cidrs})",
            )  # fmt: skip
        if g.ip6 in taken:
            raise ModelError("conflict", loc, f"{g.ip6} is in use by {taken[g.ip6]}")
        return g.ip6
    if ipaddress.ip_address(ip).version != 4 or not v6:
        return None
    if was is not None and was.ip6 is not None and was.ip6 not in taken:
        return was.ip6
    return next((a for s in v6 if (a := allocate(s, taken)) is not None), None)


def _routes(obj: Router, connected: list[tuple[Subnet, str | None]]) -> None:
    """Each static route's next hop is a neighbour on one of the router's subnets."""
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(obj.routes):
        on = [(s, own) for s, own in connected if s.usable(r.nexthop)]
        if not on:
            where = "interfaces and gateway" if obj.gateway is not None else "interfaces"
            raise ModelError(
                "invalid",
                ("routes", i, "nexthop"),
                f"{r.nexthop} is outside every subnet of the router's {where}: "
                "a next hop is a neighbour on one of them",
            )
        mine = next((s for s, own in on if own == r.nexthop), None)
        if mine is not None:
            raise ModelError(
                "invalid",
                ("routes", i, "nexthop"),
                f"{r.nexthop} is the router's own address on subnet {mine.name!r}",
            )
        if (r.cidr, r.nexthop) in seen:
            raise ModelError("invalid", ("routes", i), f"{r.cidr} via {r.nexthop} is given twice")
        seen.add((r.cidr, r.nexthop))


def _keeps_floating_ips(state: State, new: Router, prev: Router) -> None:
    """A router that changes does not strand a floating IP it routes."""
    if prev.gateway is None:
        return
    after = state.apply([Change("put", new)])
    for f in _fips(state):
        if f.network != prev.gateway.network:
            continue
        for _, pid in _fip_ports(f):
            p = state.get("port", pid)
            if p is None or not routers_of(state, p, f.network) or routers_of(after, p, f.network):
                continue
            gone = new.gateway is None or new.gateway.network != prev.gateway.network
            raise ModelError(
                "conflict",
                ("gateway",) if gone else ("interfaces",),
                f"floating IP {f.name!r} ({f.ip}) reaches port {p.name!r} through this router "
                "(change the floating IP first)",
            )


# -- floating IPs ------------------------------------------------------------------------
def _fip_ports(f: FloatingIP) -> list[tuple[tuple[str | int, ...], str]]:
    """The ports a floating IP names, with where."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if f.port is not None:
        out.append((("port",), f.port))
    out += [(("port_forwardings", i, "port"), pf.port) for i, pf in enumerate(f.port_forwardings)]
    return out


def admit_floating_ip(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, FloatingIP)
    in_tenant(state, obj, old)
    net = state.get("network", obj.network)
    if net is None:
        raise ModelError("invalid", ("network",), f"no network {obj.network!r}")
    assert isinstance(net, Network)
    if not net.external:
        raise ModelError(
            "invalid",
            ("network",),
            f"network {net.name!r} is not external: a floating IP is an address of an "
            "external network",
        )
    v4 = [s for s in state.subnets_of(net.id) if s.ip_version == 4]
    taken = _in_use(state, net, obj)
    ip = obj.ip
    if ip is not None:
        if ipaddress.ip_address(ip).version != 4:
            raise ModelError(
                "invalid", ("ip",), "a floating IP is IPv4 (IPv6 is routed without translation)"
            )
        if not any(s.usable(ip) for s in v4):
            cidrs = ", ".join(s.cidr for s in v4) or "none"
            raise ModelError(
                "invalid",
                ("ip",),
                f"{ip} is outside every IPv4 subnet of network {net.name!r} ({cidrs})",
            )
        if ip in taken:
            raise ModelError("conflict", ("ip",), f"{ip} is in use by {taken[ip]}")
    else:
        if isinstance(old, FloatingIP) and old.network == net.id and old.ip not in taken:
            ip = old.ip
        if ip is None:
            ip = next((a for s in v4 if (a := allocate(s, taken)) is not None), None)
        if ip is None:
            why = "no free IPv4 address" if v4 else "no IPv4 subnet"
            raise ModelError("conflict", ("ip",), f"network {net.name!r} has {why}")
    if obj.port is not None:
        p = _routed_port(state, obj, net, ("port",), obj.port)
        for f in _fips(state):
            if f.id != obj.id and f.port == p.id:
                raise ModelError(
                    "conflict", ("port",), f"port {p.name!r} has floating IP {f.name!r} ({f.ip})"
                )
    forwarded: dict[tuple[str, int], int] = {}
    for i, pf in enumerate(obj.port_forwardings):
        p = _routed_port(state, obj, net, ("port_forwardings", i, "port"), pf.port)
        v4ips = [a for a in p.ips if ipaddress.ip_address(a).version == 4]
        if pf.internal_ip is not None and pf.internal_ip not in v4ips:
            raise ModelError(
                "invalid",
                ("port_forwardings", i, "internal_ip"),
                f"{pf.internal_ip} is not an IPv4 address of port {p.name!r} "
                f"({', '.join(v4ips) or 'none'})",
            )
        j = forwarded.setdefault((pf.protocol, pf.external_port), i)
        if j != i:
            raise ModelError(
                "conflict",
                ("port_forwardings", i, "external_port"),
                f"{pf.protocol}/{pf.external_port} is forwarded by port_forwardings.{j}",
            )
    mac = obj.mac
    if mac is None:
        mac = old.mac if isinstance(old, FloatingIP) and old.mac else derived_mac(obj.id, net.id, 0)
    return obj.changed(ip=ip, mac=mac)


def _routed_port(
    state: State, obj: FloatingIP, net: Network, loc: tuple[str | int, ...], pid: str
) -> Port:
    p = state.get("port", pid)
    if p is None:
        raise ModelError("invalid", loc, f"no port {pid!r}")
    assert isinstance(p, Port)
    if p.tenant != obj.tenant:
        raise ModelError(
            "invalid",
            loc,
            f"port {p.name!r} is tenant {state._tenant_name(p.tenant)!r}'s; "
            "a floating IP is for its own tenant's ports",
        )
    if not routers_of(state, p, net.id):
        raise ModelError(
            "invalid",
            loc,
            f"port {p.name!r} has no IPv4 address on a subnet of a router with a gateway on "
            f"network {net.name!r}",
        )
    return p


def port_floating_ips(state: State, port: Port, old: Port | None) -> None:
    """A port that changes keeps what its floating IPs need: a routed IPv4 address, and
    the internal addresses its port forwardings give."""
    if old is None:
        return
    after = state.apply([Change("put", port)])
    v4 = [a for a in port.ips if ipaddress.ip_address(a).version == 4]
    for f in _fips(state):
        for loc, pid in _fip_ports(f):
            if pid != port.id:
                continue
            lost = not routers_of(after, port, f.network)
            pf = f.port_forwardings[int(loc[1])] if loc[0] == "port_forwardings" else None
            if pf is not None and pf.internal_ip is not None and pf.internal_ip not in v4:
                lost = True
            if lost:
                raise ModelError(
                    "conflict",
                    ("fixed_ips",),
                    f"floating IP {f.name!r} ({f.ip}) needs this port's routed IPv4 address "
                    "(change the floating IP first)",
                )


# -- what must not go from under them ----------------------------------------------------
def dangling(state: State, names: State | None = None) -> list[str]:
    """What routers and floating IPs refer to that `state` lacks, as words (with the
    names `names` has for what is gone)."""
    out: list[str] = []

    def name(kind: str, oid: str) -> str:
        o = (names or state).get(kind, oid)
        return repr(o.name) if o is not None else repr(oid)

    for r in _routers(state):
        for i, itf in enumerate(r.interfaces):
            if state.get("subnet", itf.subnet) is None:
                out.append(f"router {r.name!r} interfaces.{i}")
        g = r.gateway
        if g is not None:
            net = state.get("network", g.network)
            if net is None or (g.ip and not any(s.usable(g.ip) for s in state.subnets_of(net.id))):
                out.append(f"router {r.name!r}'s gateway")
            out += [
                f"router {r.name!r}'s gateway chassis {i}"
                for i, c in enumerate(g.chassis)
                if state.get("chassis", c) is None
            ]
    for f in _fips(state):
        net = state.get("network", f.network)
        if net is None or (f.ip and not any(s.usable(f.ip) for s in state.subnets_of(net.id))):
            out.append(f"floating IP {f.name!r}")
            continue
        for loc, pid in _fip_ports(f):
            p = state.get("port", pid)
            if p is None or not routers_of(state, p, f.network):
                where = "" if loc == ("port",) else f" {'.'.join(map(str, loc[:2]))}"
                out.append(f"floating IP {f.name!r}{where} (port {name('port', pid)})")
    return out


def gateway_users(state: State, network: Network) -> list[str]:
    """Routers' gateways and floating IPs on `network`, as words."""
    out = [f"router {r.name!r}'s gateway" for r in _routers(state)
           if r.gateway is not None and r.gateway.network == network.id]  # fmt: skip
    out += [f"floating IP {f.name!r}" for f in _fips(state) if f.network == network.id]
    return sorted(out)


def physnet_users(state: State, chassis_id: str) -> list[tuple[Router, Network]]:
    """The gateways that run on a chassis, with their external networks."""
    out = []
    for r in _routers(state):
        g = r.gateway
        net = state.get("network", g.network) if g is not None else None
        if g is not None and chassis_id in g.chassis and net is not None:
            out.append((r, net))
    return out


def interface_subnets(state: State, network_id: str) -> list[tuple[Router, Subnet]]:
    """Routers' interfaces on subnets of a network."""
    return [
        (r, sub)
        for r in _routers(state)
        for i in r.interfaces
        if (sub := state.get("subnet", i.subnet)) is not None and sub.network == network_id
    ]


# -- names in references -----------------------------------------------------------------
def resolve_refs(state: State, kind: str, data: dict[str, Any], tenant: str | None) -> None:
    """Names in a router's or floating IP's references become ids, in place: subnets and
    ports of the object's tenant first (else of any tenant, for admission to refuse by
    name), an external network of any tenant (the provider's), chassis."""
    if kind == "router":
        itfs = data.get("interfaces")
        if isinstance(itfs, list):
            data["interfaces"] = [
                _ref_in(state, "subnet", itf, "subnet", tenant, ("interfaces", i))
                for i, itf in enumerate(itfs)
            ]
        g = data.get("gateway")
        if isinstance(g, dict):
            g = _ref_in(state, "network", g, "network", tenant, ("gateway",))
            if isinstance(g.get("chassis"), list):
                g["chassis"] = [
                    _ref(state, "chassis", c, None, ("gateway", "chassis", i))
                    for i, c in enumerate(g["chassis"])
                ]
            data["gateway"] = g
    elif kind == "floating_ip":
        for fname in ("network", "port"):
            if isinstance(data.get(fname), str) and data[fname]:
                data[fname] = _ref(state, fname, data[fname], tenant, (fname,))
        pfs = data.get("port_forwardings")
        if isinstance(pfs, list):
            data["port_forwardings"] = [
                _ref_in(state, "port", pf, "port", tenant, ("port_forwardings", i))
                for i, pf in enumerate(pfs)
            ]


def _ref_in(
    state: State, kind: str, item: Any, fname: str, tenant: str | None, loc: tuple[str | int, ...]
) -> Any:
    if isinstance(item, dict) and isinstance(item.get(fname), str) and item[fname]:
        return {**item, fname: _ref(state, kind, item[fname], tenant, (*loc, fname))}
    return item


def _ref(state: State, kind: str, ref: Any, tenant: str | None, loc: tuple[str | int, ...]) -> Any:
    if not isinstance(ref, str) or not ref:
        return ref
    o = state.find(kind, ref, tenant) if tenant else None
    if o is None:
        hits = [x for x in state.objects.get(kind, {}).values() if x.name == ref or x.id == ref]
        if kind == "network" and len(hits) > 1:  # the external one: the provider's network
            hits = [x for x in hits if getattr(x, "external", False)] or hits
        if len(hits) > 1:
            tenants = sorted({state._tenant_name(getattr(x, "tenant", "")) for x in hits})
            raise ModelError(
                "invalid",
                loc,
                f"{kind} {ref!r} is ambiguous (in tenants {', '.join(tenants)}); give the id",
            )
        o = hits[0] if hits else None
    if o is None:
        raise ModelError("invalid", loc, f"no {kind} {ref!r}")
    return o.id


# -- what other kinds' changes must keep -------------------------------------------------
def chassis_uplinks(state: State, ch: Chassis) -> None:
    """A gateway chassis keeps the uplinks its gateways' networks need."""
    for r, net in physnet_users(state, ch.id):
        if net.physnet not in ch.physnets:
            raise ModelError(
                "conflict",
                ("physnets",),
                f"router {r.name!r}'s gateway on network {net.name!r} runs on chassis "
                f"{ch.name!r}: it needs an uplink for physnet {net.physnet!r}",
            )


def network_change(state: State, net: Network) -> None:
    """A network stays external while gateways and floating IPs are on it, never has a
    router interface while external, and keeps its gateways' chassis' physnet."""
    if not net.external:
        users = gateway_users(state, net)
        if users:
            raise ModelError(
                "conflict",
                ("external",),
                f"{', '.join(users)} {'is' if len(users) == 1 else 'are'} on network "
                f"{net.name!r}: it stays external while they are",
            )
        return
    for r, sub in interface_subnets(state, net.id):
        raise ModelError(
            "conflict",
            ("external",),
            f"subnet {sub.name!r} is on router {r.name!r}: an external network is reached "
            "through a router's gateway, not an interface",
        )
    for r in _routers(state):
        if r.gateway is None or r.gateway.network != net.id:
            continue
        for cid in r.gateway.chassis:
            ch = state.get("chassis", cid)
            if ch is not None and net.physnet not in ch.physnets:
                raise ModelError(
                    "invalid",
                    ("physnet",),
                    f"router {r.name!r}'s gateway runs on chassis {ch.name!r}, which has no "
                    f"uplink for physnet {net.physnet!r}",
                )


def subnet_change(state: State, sub: Subnet, net: Network) -> None:
    """A subnet's gateway is nobody else's address nor a next hop of its router; a SLAAC
    subnet's ports have their MACs' EUI-64 addresses; a new external subnet overlaps no
    interface of a router whose gateway is on its network."""
    held = held_addresses(state, net.id)
    if sub.gateway in held:
        raise ModelError(
            "conflict", ("gateway",), f"{sub.gateway} is in use by {held[sub.gateway]}"
        )
    if sub.ipv6_mode in SLAAC:
        for p in state.ports_of(net.id):
            for f in p.fixed_ips:
                if f.subnet == sub.id and f.ip and p.mac and f.ip != eui64(sub.cidr, p.mac):
                    raise ModelError(
                        "invalid",
                        ("ipv6_mode",),
                        f"port {p.name!r}'s address {f.ip} is not {eui64(sub.cidr, p.mac)}, the "
                        f"EUI-64 address of its MAC: {sub.ipv6_mode} gives it that one",
                    )
    for r in _routers(state):
        if any(i.subnet == sub.id for i in r.interfaces):
            for i, route in enumerate(r.routes):
                if route.nexthop == sub.gateway:
                    raise ModelError(
                        "conflict",
                        ("gateway",),
                        f"{sub.gateway} is router {r.name!r}'s next hop (routes.{i})",
                    )
        if r.gateway is not None and r.gateway.network == net.id:
            for itf in r.interfaces:
                s = state.get("subnet", itf.subnet)
                if (
                    s is not None
                    and s.ip_version == sub.ip_version
                    and s.network_obj.overlaps(sub.network_obj)
                ):
                    raise ModelError(
                        "conflict",
                        ("cidr",),
                        f"{sub.cidr} overlaps subnet {s.name!r} ({s.cidr}) of router "
                        f"{r.name!r}, whose gateway is on network {net.name!r}",
                    )
