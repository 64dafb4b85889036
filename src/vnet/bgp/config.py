"""What each chassis' BGP speaker advertises, and its FRR configuration: pure.

The physical network learns where floating IPs and routers' untranslated
subnets live from a real routing daemon, FRR (Debian 12's 8.4), one speaker
per chassis with a BGP configuration (`Chassis.bgp`): its AS, and per physnet
it has an uplink for, its own addresses there (one per family) and the
upstream routers it peers with (eBGP).  Where it lives: on the chassis, as
its `physnets` do -- each host peers with its own top-of-rack router, and
its address on the physical network is the host's, not any tenant's.

What a chassis advertises (`advertisements`), each prefix on the physnet of
its external network, only where the chassis has an address of the prefix's
family there, and only of routers that are up with a gateway chassis (what
else translates nothing):
- a floating IP (/32) of a router with `floating_ips` in its `advertise` (the
  default): by its port's chassis when it is distributed (`nat.distributed`);
  otherwise by the router's gateway chassis -- the active one as is, each
  standby with its own AS prepended as many times as its rank (1 for the
  first standby), so the upstream prefers the active gateway while it lives
  and falls back to a standby's route when it goes (BFD: in about a second);
- with `subnets` in `advertise`: the router's subnets that leave untranslated
  (IPv6 always, IPv4 when its gateway has no `snat`), by the gateway chassis
  as above.
The next hop is the advertising chassis' own address on the physnet (eBGP's
next-hop-self from the session's `update-source`).

The FRR configuration (`frr_conf`), tested on Debian 12's FRR 8.4.4 with
zebra, staticd, bgpd and bfdd (`speaker` runs them):
- each advertised prefix is a static blackhole route with a *tag* saying on
  which physnet and at which rank (`tag`), redistributed into BGP through the
  route-map `vnet-adv` (which matches the tags); a static route is in the RIB,
  so nothing needs `no bgp network import-check`.  The blackhole is the
  speaker's own kernel's (its host sends nothing there itself);
- FRR 8.4's `bgp ebgp-requires-policy` (on by default) advertises nothing to
  an eBGP peer without an outbound policy: each physnet's sessions have
  `vnet-out-PHYSNET` out (the tags of that physnet, each rank's entry
  prepending the AS rank times) and `vnet-in` in (deny: a chassis learns no
  routes);
- `no bgp default ipv4-unicast`: each peer is activated in its own family
  only; IPv6 prefixes go over the IPv6 sessions;
- keepalive 3 s, hold 9 s, and a session retried every second (`timers
  connect 1`: 8.4's default waits 120 s after a refused first try);
- BFD (bfdd) on every session, profile `vnet`: 300 ms intervals, multiplier
  3 -- a silent speaker's routes leave the upstream in about 0.9 s instead of
  the hold time.
Only the static routes change with the model (`routes`); the rest of the file
(`structure`) changes only with the chassis' BGP configuration, so a speaker
applies most changes as a few `ip route` lines.  `upstream_conf` is the
upstream router's side, for the lab's `outside`: it accepts every route from
its peers and announces none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..compiler.nat import distributed
from ..model.l3 import active_gateway, routers_of
from ..model.objects import Chassis, FloatingIP, Network, Router
from ..model.state import State

__all__ = [
    "BFD_INTERVAL_MS",
    "BFD_MULTIPLIER",
    "MAX_RANK",
    "TAG_BASE",
    "Advert",
    "advertisements",
    "frr_conf",
    "route_lines",
    "router_id",
    "structure",
    "tag",
    "upstream_conf",
]

TAG_BASE = 4200  # the static routes' tags: TAG_BASE + 16 * physnet's index + rank
MAX_RANK = 3  # standbys past the third prepend as the third
BFD_INTERVAL_MS = 300
BFD_MULTIPLIER = 3
# bfdd's profile of the sessions, the speakers' and the upstream's alike
_BFD_PROFILE = ["bfd", " profile vnet", f"  detect-multiplier {BFD_MULTIPLIER}",
                f"  receive-interval {BFD_INTERVAL_MS}", f"  transmit-interval {BFD_INTERVAL_MS}",
                " exit", "exit", "!"]  # fmt: skip


@dataclass(frozen=True, order=True)
class Advert:
    """One prefix a chassis advertises on a physnet, at a rank (0: active)."""

    prefix: str
    physnet: str
    rank: int
    why: str  # "floating_ip NAME" / "subnet NAME of router NAME"

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.prefix).version


def tag(ch: Chassis, physnet: str, rank: int) -> int:
    """The static route tag of `physnet` (by its place among the chassis' BGP physnets)
    and `rank`."""
    assert ch.bgp is not None
    return TAG_BASE + 16 * sorted(ch.bgp.physnets).index(physnet) + min(rank, MAX_RANK)


def _rank(state: State, r: Router, chassis_id: str) -> int | None:
    """`chassis_id`'s rank among `r`'s gateway chassis: 0 active, 1.. standby, None not one."""
    g = r.gateway
    if g is None or chassis_id not in g.chassis:
        return None
    active = active_gateway(r, state)
    if chassis_id == active:
        return 0
    standby = [c for c in g.chassis if c != active]
    return 1 + standby.index(chassis_id)


def _families(ch: Chassis, physnet: str) -> set[int]:
    assert ch.bgp is not None
    return {ipaddress.ip_address(a).version for a in ch.bgp.physnets[physnet].addresses}


def advertisements(state: State, chassis_id: str) -> list[Advert]:
    """What chassis `chassis_id` advertises (sorted; none without a BGP configuration)."""
    ch = state.get("chassis", chassis_id)
    if ch is None or ch.bgp is None:
        return []
    out: dict[str, Advert] = {}

    def add(prefix: str, net: Network, rank: int | None, why: str) -> None:
        p = net.physnet
        if rank is None or p is None or p not in ch.bgp.physnets:
            return
        if ipaddress.ip_network(prefix).version not in _families(ch, p):
            return
        a = Advert(prefix, p, min(rank, MAX_RANK), why)
        if prefix not in out or a.rank < out[prefix].rank:
            out[prefix] = a

    for f in _fips(state):
        net = state.get("network", f.network)
        pids = [f.port] if f.port else [pf.port for pf in f.port_forwardings]
        ports = [p for pid in pids if (p := state.get("port", pid)) is not None]
        if net is None or f.ip is None or not ports:
            continue
        routers = routers_of(state, ports[0], net.id)
        if not routers or "floating_ips" not in routers[0].advertise:
            continue
        r = routers[0]
        if not r.admin_up or active_gateway(r, state) is None:
            continue  # translated nowhere (`nat.fip_flows`): nothing to advertise
        pch = state.get("chassis", ports[0].chassis) if ports[0].chassis else None
        if distributed(f, ports[0], net, pch):
            rank: int | None = 0 if ports[0].chassis == ch.id else None
        else:
            rank = _rank(state, r, ch.id)
        bits = ipaddress.ip_address(f.ip).max_prefixlen
        add(f"{f.ip}/{bits}", net, rank, f"floating_ip {f.name}")
    for r in _routers(state):
        g = r.gateway
        if g is None or "subnets" not in r.advertise or not r.admin_up or not g.chassis:
            continue
        net = state.get("network", g.network)
        if net is None:
            continue
        for itf in r.interfaces:
            sub = state.get("subnet", itf.subnet)
            if sub is None:
                continue
            cidr = ipaddress.ip_network(sub.cidr)
            if cidr.version == 4 and g.snat:
                continue  # leaves as the gateway's address: nothing to advertise
            add(str(cidr), net, _rank(state, r, ch.id), f"subnet {sub.name} of router {r.name}")
    return sorted(out.values())


def _fips(state: State) -> Iterable[FloatingIP]:
    return state.objects.get("floating_ip", {}).values()  # type: ignore[return-value]


def _routers(state: State) -> Iterable[Router]:
    return state.objects.get("router", {}).values()  # type: ignore[return-value]


def router_id(ch: Chassis) -> str:
    """The speaker's BGP identifier: its first IPv4 address on a physnet, else its IPv4
    underlay address, else one derived from its id."""
    assert ch.bgp is not None
    for p in sorted(ch.bgp.physnets):
        for a in ch.bgp.physnets[p].addresses:
            if ipaddress.ip_address(a).version == 4:
                return a
    if ch.underlay and ipaddress.ip_address(ch.underlay).version == 4:
        return ch.underlay
    h = int.from_bytes(ch.id.encode()[:4].ljust(4, b"\0"), "big") | 1
    return str(ipaddress.IPv4Address(h))


def route_lines(ch: Chassis, adverts: Iterable[Advert]) -> list[str]:
    """The static routes that put `adverts` in BGP, as FRR configuration lines."""
    out = []
    for a in adverts:
        ip = "ip" if a.family == 4 else "ipv6"
        out.append(f"{ip} route {a.prefix} blackhole tag {tag(ch, a.physnet, a.rank)}")
    return sorted(out)


def structure(ch: Chassis) -> str:
    """Everything of the speaker's configuration but its static routes: the route-maps,
    BFD profile and BGP sessions (changes only with `ch.bgp`)."""
    b = ch.bgp
    assert b is not None
    lines = ["frr defaults traditional", f"hostname {ch.name}", "!"]
    tags = []
    for p in sorted(b.physnets):
        for rank in range(MAX_RANK + 1):
            t = tag(ch, p, rank)
            tags.append(t)
            lines += [f"route-map vnet-out-{p} permit {10 * (rank + 1)}", f" match tag {t}"]
            if rank:
                lines.append(f" set as-path prepend {' '.join([str(b.asn)] * rank)}")
            lines += ["exit", "!"]
    for i, t in enumerate(tags):
        lines += [f"route-map vnet-adv permit {10 * (i + 1)}", f" match tag {t}", "exit", "!"]
    lines += ["route-map vnet-in deny 10", "exit", "!"]
    if b.bfd:
        lines += _BFD_PROFILE
    lines += [f"router bgp {b.asn}", f" bgp router-id {router_id(ch)}"]
    lines.append(" no bgp default ipv4-unicast")
    fams: dict[int, list[tuple[str, str]]] = {4: [], 6: []}
    for p in sorted(b.physnets):
        up = b.physnets[p]
        mine = {ipaddress.ip_address(a).version: a for a in up.addresses}
        for peer in up.peers:
            v = ipaddress.ip_address(peer.ip).version
            lines += [
                f" neighbor {peer.ip} remote-as {peer.asn}",
                f" neighbor {peer.ip} update-source {mine[v]}",
                f" neighbor {peer.ip} timers 3 9",
                f" neighbor {peer.ip} timers connect 1",
            ]
            if b.bfd:
                lines.append(f" neighbor {peer.ip} bfd profile vnet")
            fams[v].append((peer.ip, p))
    for fam, peers in fams.items():
        if not peers:
            continue
        lines.append(f" address-family ipv{fam} unicast")
        lines.append("  redistribute static route-map vnet-adv")
        for ip, p in peers:
            lines += [
                f"  neighbor {ip} activate",
                f"  neighbor {ip} route-map vnet-in in",
                f"  neighbor {ip} route-map vnet-out-{p} out",
            ]
        lines.append(" exit-address-family")
    lines += ["exit", "!"]
    return "\n".join(lines) + "\n"


def frr_conf(ch: Chassis, adverts: Iterable[Advert]) -> str:
    """The speaker's whole frr.conf: its static routes, then `structure`."""
    routes = route_lines(ch, adverts)
    return "\n".join([*routes, "!"]) + "\n" + structure(ch) if routes else structure(ch)


def upstream_conf(
    name: str, asn: int, rid: str, peers: Iterable[tuple[str, int]], bfd: bool = True
) -> str:
    """An upstream router's frr.conf (the lab's `outside`): eBGP with each (address, AS)
    peer, in its own family, every route accepted, none announced; BFD as the speakers'."""
    lines = ["frr defaults traditional", f"hostname {name}", "!"]
    # an IPv6 route's next hop is its global address (not the link-local one beside it)
    lines += ["route-map vnet-accept permit 10", " set ipv6 next-hop prefer-global", "exit", "!"]
    lines += ["route-map vnet-announce-none deny 10", "exit", "!"]
    if bfd:
        lines += _BFD_PROFILE
    lines += [f"router bgp {asn}", f" bgp router-id {rid}", " no bgp default ipv4-unicast"]
    fams: dict[int, list[str]] = {4: [], 6: []}
    for ip, peer_asn in sorted(set(peers)):
        lines += [
            f" neighbor {ip} remote-as {peer_asn}",
            f" neighbor {ip} timers 3 9",
            f" neighbor {ip} timers connect 1",
        ]
        if bfd:
            lines.append(f" neighbor {ip} bfd profile vnet")
        fams[ipaddress.ip_address(ip).version].append(ip)
    for v, ips in fams.items():
        if not ips:
            continue
        lines.append(f" address-family ipv{v} unicast")
        for ip in ips:
            lines += [
                f"  neighbor {ip} activate",
                f"  neighbor {ip} route-map vnet-accept in",
                f"  neighbor {ip} route-map vnet-announce-none out",
            ]
        lines.append(" exit-address-family")
    lines += ["exit", "!"]
    return "\n".join(lines) + "\n"
