"""The logical router's flows: routing at the first hop, and its gateway's.

A router is a logical datapath of its own (`stages.ROUTER`, key
`ROUTER_BASE | router.tunnel_key` in `metadata`, above every VNI), joined to
each network it has an interface on by a logical port of that network (the
interface's `tunnel_key`, MAC and address -- the subnet's gateway).  On the
switch's side that port is a port like any other: the lookup delivers the
router's MAC to it, the responder answers ARP and neighbour solicitations
for its addresses (the gateway's, and for IPv6 its link-local one), egress
port security lets it receive what is addressed to it.  Its "output" is a
patch (`phy_out`, the same flow on every chassis): into the router's
ingress on the same chassis, with `reg6` = the interface's number in the
router.  The router's output to an interface is the patch back
(`lr_out_delivery`): into that network's lookup with `reg6` = the router's
port there.  So a frame is routed on its sender's chassis and the
destination switch's usual output stage tunnels it straight to the
destination port's chassis -- no hop through another chassis.

Registers.  In the router's pipeline `reg6`/`reg7` hold the router's own
port numbers (`routing.Interface.number`: the interface's position in
`Router.interfaces`, from 1) -- an interface's `tunnel_key` is unique in its
network only, so two interfaces of one router may share one.  `reg0` holds
the next hop (`routing.NextHop.id`: 0 the destination itself, else the
number of a static route's next hop), so no register needs 128 bits for an
IPv6 next hop.  The firewall's registers are left alone; conntrack state is
cleared at each patch; the router's own conntrack zone on the chassis (its
NAT's) is in `reg1` (`REG_RZONE`, loaded by the chassis stage `lr_in_zone`).

The gateway.  A router's `gateway` is one more port, on an external
network, with an interface of each family (`routing.interfaces`: numbered
after the interfaces), resident on the active gateway chassis
(`model.l3.active_gateway`: the first gateway chassis that chassis' BFD
reports leave live; `LFlow.resident`, which `localize` honours).  It is
given to the router's builder as a value (`_objects`' args), so a failover
rebuilds the routers it moves and nothing else:
only there is its MAC looked up, and ARP and neighbour solicitations from
the physical network for its addresses handed to the router
(`ls_in_l2_lkup`: frames from a localnet port skip the switch's responder)
and answered in `lr_in_ip_input`, back out through the router's egress.
A route out of the gateway is routed there only; on any other chassis the
same flow sends the frame as it came to `lr_in_gw_redirect`, back into its
network addressed to the router's port, flagged `FLAG_REDIRECT`, which the
output stage tunnels to the active chassis, where that port's resident
patch (taking frames out of a tunnel, its flags cleared) routes it for real
(OVN's chassis redirect).  The flows resident on the active gateway chassis
stand down there when its switch is isolated (`LFlow.stands_down`,
`gateway_stands_down`): its lookup of and answers for the gateway, the
redirected frames' patch into the router, the routes out of the gateway --
with them its SNAT and floating IPs, reached only through them -- so a
chassis cut from every BFD peer (and the controller) while its uplink is up
stops being the gateway the others have moved to; not with a single gateway
chassis (no other could take over; OVN's ha_chassis_group_is_active too).
NAT, in the router's zone: `lr_in_dnat`
untranslates replies to the gateway's address, `lr_out_snat` translates the
router's IPv4 subnets to it (unless `snat: false`) and untranslates the
rest; floating IPs and port forwardings are `nat`'s, per floating IP.

The stages (as OVN's `lr_in_*`):
- `lr_in_zone` (the chassis'): the router's conntrack zone into `reg1`;
- `lr_in_admission`: frames for the interface's MAC of its own family (an
  IPv4 interface takes IPv4 and ARP, an IPv6 one IPv6), and broadcast ARP;
  at the gateway, solicited-node multicast (and a distributed floating IP's
  MAC, `nat`);
- `lr_in_dnat`: from outside, by the gateway: DNAT of floating IPs and
  forwarded ports (`nat`), replies to the gateway's address untranslated;
- `lr_in_ip_input`: martian addresses dropped; an echo request to a router
  address answered in place -- addresses swapped, the reply routed back like
  any packet (both families, in flows: moves of 128-bit addresses are what
  the switch's ND responder already does); the reply leaves with `in_port`
  cleared, so it may go back out of the port it came in by; anything else
  to a router address dropped; TTL (hop limit) <= 1 to the controller;
  ARP and neighbour discovery at an interface to the controller, which
  learns the sender's MAC (`neighbour`; the switch answers for router
  addresses itself);
- `lr_in_ip_routing`: one flow per prefix of the effective routing table
  (`model.routing`), priority from the prefix length, a connected route
  above a static one of the same length: `dec_ttl`, out interface, next hop,
  the interface's MAC as source.  Several next hops (ECMP): `dec_ttl` and a
  select group, one bucket per next hop, each setting the three and
  resubmitting to `lr_in_arp_resolve` -- the bucket is chosen by a hash of
  the addresses and ports (vnet's `select_hash`; Open vSwitch's default
  selection), so a connection keeps its path.  No route: to the controller;
- `lr_in_arp_resolve`: the next hop's MAC as destination, from the model --
  each port of an attached network, by its addresses and allowed address
  pairs (built per port, so a port's change recompiles that port), then
  from the learned neighbours in the store (`neighbour`, below the ports);
  an unknown next hop to the controller, which asks for it by ARP or
  neighbour solicitation (`neighbour.unresolved`);
- `lr_in_chk_pkt_len`, `lr_in_larger_pkts` (OVN's): IP out of an interface
  whose network has an MTU (every admitted network has one: the tunnels'
  room unless set lower) is checked with `check_pkt_larger(MTU + 14)` --
  the frame's length, Ethernet header in -- into `FLAG_LARGER`, and what is
  longer goes to the controller (too big), one flow per (in, out) pair of
  interfaces of a family;
- `lr_in_gw_redirect` (reached by name): the chassis redirect, above;
- `lr_out_snat`: out of the gateway: SNAT to the gateway's address or a
  floating IP, replies untranslated;
- `lr_out_delivery`: the patch into the out interface's network.

Punts: the controller's contract.  A packet the router cannot route is
sent to the controller (`controller(reason=action)`) on the chassis that
routed it -- the sender's, and the packet-in's `in_port` is the sender's
OpenFlow port -- by a flow whose cookie `punts(lflows)` maps to a `Punt`:
why (`ttl-expired`, `no-route`, `too-big`), the router, the interface
the packet came in by (its number, subnet, network, MAC and address: the
source to answer from) and the ICMP or ICMPv6 type and code to answer with
(time exceeded 11/0 and 3/0, net unreachable 3/0, no route 1/0;
fragmentation needed 3/4 and packet too big 2/0 with the out network's MTU,
and the router's key: that error is routed back, see below).  The
controller answers with the error (`packet.icmperr`): Ethernet
source the interface's MAC, destination the packet's source MAC, IP source
the interface's address, destination the packet's source, by a packet-out
straight out of `in_port` -- never an error about an ICMP error, a
fragment other than the first, or a multicast or broadcast packet (RFC 1812
4.3.2.7).  A packet too big is punted after routing rewrote its
Ethernet header, maybe on a chassis it reached by a tunnel (the gateway's),
so its error is not sent out of `in_port`: the controller routes it through
the router as if it came in by the packet's in interface (OVN's icmp4_error
does the same), and the route and the resolved MAC bring it to the sender.
An IPv4 packet without DF may be fragmented; no datapath here fragments, so
the controller drops it and counts it.  The punt flows are not metered yet: the controller's bounded
queue and its token bucket per router (`controller.punt`) limit their cost.

The firewall sees the router's port as the other end of a routed frame on
each network (`reg6` on the destination's, `reg7` on the sender's), and
looks past it by the frame's address to the port on the other side, in the
router's routing domain (`acl`'s "Across a router"): group and selector
rules hold across subnets as address ranges do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..model.l3 import (
    ROUTER_BASE,  # a router's datapath key: above every VNI (< 2^24)
    active_gateway,
)
from ..model.objects import Network, Port, Router
from ..model.routing import Interface, NextHop, RouteEntry, build, interfaces
from ..model.rules import State
from ..pipeline.actions import (
    OFPP_CONTROLLER,
    OFPP_IN_PORT,
    Action,
    CheckPktLarger,
    Ct,
    CtClear,
    DecTtl,
    Group,
    Nat,
    Output,
    RegMove,
    Resubmit,
    SetField,
)
from ..pipeline.fields import lookup
from ..pipeline.groups import Bucket, GroupDesc, GroupType
from .logical import Kind, LFlow, To, _Emit, datapath_key, datapath_kind
from .neighbour import learning, unresolved
from .stages import (
    FLAG_FROM_TUNNEL,
    FLAG_LARGER,
    FLAG_REDIRECT,
    LOCALNET_KEY,
    NEXT,
    OUTPUT,
    REG_FLAGS,
    REG_INPORT,
    REG_NEXTHOP,
    REG_OUTPORT,
    REG_RZONE,
    ROUTER,
    resolve,
    table,
)
from .switch import _arp_reply, _na_reply, _ns, eui64_link_local

__all__ = [
    "ECMP_MAX",
    "ROUTER_BASE",
    "Attach",
    "Punt",
    "group_id",
    "groups",
    "punts",
    "router_key",
]

ETH_IP, ETH_ARP, ETH_IP6 = 0x0800, 0x0806, 0x86DD
_ETH = {4: ETH_IP, 6: ETH_IP6}
_DST = {4: "ipv4_dst", 6: "ipv6_dst"}
_SRC = {4: "ipv4_src", 6: "ipv6_src"}
BROADCAST = (1 << 48) - 1
_NOT_FROM_TUNNEL = (0, FLAG_FROM_TUNNEL)
ECMP_MAX = 127  # ECMP prefixes a router's groups number (group id: key << 7 | n)
_SLOT = {n: lookup(n).index for n in ("in_port", "metadata", "eth_src", "eth_dst", "ipv4_src",
                                        "ipv4_dst", "ipv6_src", "ipv6_dst", "ip_ttl", "icmp_type",
                                        "icmpv6_type", "nd_tll", REG_INPORT, REG_OUTPORT,
                                        REG_NEXTHOP, REG_FLAGS, REG_RZONE)}  # fmt: skip
# ICMP errors the controller answers with: (type, code) by family
TIME_EXCEEDED = {4: (11, 0), 6: (3, 0)}
UNREACHABLE = {4: (3, 0), 6: (1, 0)}  # net unreachable / no route to destination
TOO_BIG = {4: (3, 4), 6: (2, 0)}  # fragmentation needed and DF set / packet too big
ETH_HEADER_LEN = 14  # check_pkt_larger counts the Ethernet header, not VLAN tags
# addresses never routed (RFC 1812 5.3.7, RFC 4291 2.5.6): (family, field side, prefix)
_MARTIANS = (
    (4, "src", "0.0.0.0/8"), (4, "dst", "0.0.0.0/8"), (4, "src", "127.0.0.0/8"),
    (4, "dst", "127.0.0.0/8"), (4, "src", "224.0.0.0/4"), (4, "dst", "224.0.0.0/4"),
    (4, "src", "255.255.255.255/32"), (4, "dst", "255.255.255.255/32"),
    (6, "src", "::/128"), (6, "src", "::1/128"), (6, "dst", "::1/128"),
    (6, "src", "fe80::/10"), (6, "dst", "fe80::/10"), (6, "src", "ff00::/8"),
    (6, "dst", "ff00::/8"),
)  # fmt: skip


def router_key(r: Router) -> int:
    """A router's datapath key in `metadata`."""
    return ROUTER_BASE | (r.tunnel_key or 0)


def group_id(r: Router, n: int) -> int:
    """The select group of a router's `n`-th ECMP prefix (1..ECMP_MAX): unique across
    routers, as their keys are."""
    return (r.tunnel_key or 0) << 7 | n


@dataclass(frozen=True)
class Punt:
    """What a router's controller-bound flow means: the ICMP error to answer with."""

    reason: str  # ttl-expired | no-route | too-big
    router: str  # the router's id
    router_name: str
    interface: int  # the router's port number the packet came in by
    subnet: str  # that interface's subnet (id)
    network: str  # and network (id)
    mac: str  # its MAC: the answer's Ethernet source
    address: str  # its address: the answer's IP source
    family: int  # 4 | 6
    icmp: tuple[int, int]  # the ICMP (4) or ICMPv6 (6) type and code to answer with
    mtu: int = 0  # too-big: the out interface's network's MTU (the error carries it)
    key: int = 0  # too-big: the router's datapath key (the error is routed back through it)


def punts(lflows: Iterable[LFlow]) -> dict[int, Punt]:
    """cookie -> Punt, for every router flow that sends to the controller."""
    return {lf.flow.cookie: lf.punt for lf in lflows if isinstance(lf.punt, Punt)}


def groups(lflows: Iterable[LFlow]) -> list[GroupDesc]:
    """The groups `lflows` name (a router's ECMP), by id."""
    return sorted({lf.group.group_id: lf.group for lf in lflows if lf.group}.values(),
                  key=lambda g: g.group_id)  # fmt: skip


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _prefix(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return int(net.network_address), int(net.netmask)


def _load(reg: str, value: int) -> SetField:
    return SetField(_SLOT[reg], value)


@dataclass(frozen=True)
class _Datapath:
    """The router as the emitter's datapath (its id; its key comes with it)."""

    id: str


def _live(itfs: Sequence[Interface]) -> list[Interface]:
    """Interfaces admission completed (a MAC and a key in the network)."""
    return [i for i in itfs if i.mac and i.tunnel_key]


def _objects(state: State) -> list[tuple[str, tuple[Any, ...], tuple[Any, ...]]]:
    """Each router, with the networks of its interfaces; the interfaces as values."""
    out = []
    for r in state.all("router"):
        itfs = tuple(interfaces(state, r))
        nets = {i.network: state.get("network", i.network) for i in itfs}
        gw = active_gateway(r, state)  # a value: a failover rebuilds the routers it moves
        out.append((r.id, (r, *(n for n in nets.values() if n is not None)), (itfs, gw)))
    return out


def gateway_stands_down(r: Router, gw: str | None) -> bool:
    """Whether the flows that make `gw` the router's active gateway stand down while its
    switch is isolated: when another gateway chassis could take over."""
    return gw is not None and r.gateway is not None and len(r.gateway.chassis) > 1


def router_flows(r: Router, *rest: Any) -> list[LFlow]:
    """A router's pipeline, and its ports on its networks' switches."""
    *nets, itfs, gw = rest
    by_id: dict[str, Network] = {n.id: n for n in nets}
    if r.tunnel_key is None or not r.admin_up:
        return []
    # the gateway is one port with an address of each family; without an active chassis
    # it is nowhere (what would leave by it finds no route)
    live = [i for i in _live(itfs) if i.network in by_id and (gw or not i.gateway)]
    out: list[LFlow] = []
    ports: dict[tuple[str, int], list[Interface]] = {}
    for itf in live:
        ports.setdefault((itf.network, itf.tunnel_key or 0), []).append(itf)
    for (net_id, _), sides in ports.items():
        net = by_id[net_id]
        if net.admin_up:
            out += _switch_side(r, net, sides, gw)
    e = _Emit("router", r, _Datapath(r.id), key=router_key(r))
    _admission(e, live)
    _ip_input(e, r, live)
    _routing(e, r, live, build(r, live), gw)
    _too_big(e, r, live, by_id)
    if gw is not None:
        _redirect(e, live, by_id)
    _gateway_nat(e, r, live)
    if gw is not None:
        _gateway_answers(e, live, gw, gateway_stands_down(r, gw))
    _delivery(e, live, by_id)
    return out + e.out


def _iface(itf: Interface) -> str:
    if itf.gateway:
        return f"gateway IPv{itf.family} (subnet {itf.subnet_name})"
    return f"interface {itf.number} (subnet {itf.subnet_name})"


def _switch_side(
    r: Router, net: Network, sides: Sequence[Interface], gw: str | None
) -> list[LFlow]:
    """The router's port on `net`: looked up, answered for, received by, patched.

    A port has one interface, or -- the gateway -- one of each family; the gateway is
    looked up and answered for on its active chassis only (elsewhere the physical
    network carries frames for it there), and patched into the router anywhere a frame
    reaches it.  On the active gateway chassis an interface's port also takes frames out
    of a tunnel: those other chassis redirect to it (`lr_in_gw_redirect`)."""
    e = _Emit("router", r, net)
    first = sides[0]
    mac, key = first.mac or "", first.tunnel_key or 0
    port = "gateway" if first.gateway else _iface(first)
    home = (gw, True) if first.gateway and gw else None
    sd = gateway_stands_down(r, gw)  # the resident flows stand down when isolated
    down = home is not None and sd
    e("ls_in_l2_lkup", 50, f"{port}: unicast to the router's MAC", {"eth_dst": _mac(mac)},
      apply=[_load(REG_OUTPORT, key)], goto=NEXT, resident=home, stands_down=down)  # fmt: skip
    for itf in sides:
        if itf.gateway and gw:
            for a in (itf.address, eui64_link_local(mac)) if itf.family == 6 else (itf.address,):
                e("ls_in_l2_lkup", 80, f"{_iface(itf)}: from outside, asked for {a}: to the "
                  "router", {REG_INPORT: LOCALNET_KEY, **asking(a)},
                  apply=[_load(REG_OUTPORT, key)], goto=NEXT, resident=home, stands_down=down)  # fmt: skip
    for itf in sides:
        me = _iface(itf)
        if itf.family == 4:
            req = {"eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": _prefix(itf.address)}
            e("ls_in_arp_rsp", 50, f"{me}: arp reply for the router's address", req,
              apply=_arp_reply(mac, itf.address), resident=home, stands_down=down)  # fmt: skip
            continue
        for a in (itf.address, eui64_link_local(mac)):
            ns = _ns(a)
            e("ls_in_arp_rsp", 55, f"{me}: duplicate address detection: pass for {a}",
              {**ns, "ipv6_src": (0, (1 << 128) - 1)}, goto=NEXT, resident=home, stands_down=down)  # fmt: skip
            e("ls_in_arp_rsp", 55, f"{me}: no source link-layer address: pass for {a}",
              {**ns, "nd_sll": 0}, goto=NEXT, resident=home, stands_down=down)  # fmt: skip
            e("ls_in_arp_rsp", 50, f"{me}: neighbour advertisement for {a}",
              ns, apply=_na_reply(mac, a), goto="ls_in_nd_na", resident=home, stands_down=down)  # fmt: skip
            e("ls_in_nd_na", 50, f"{me}: the router's link-layer address for {a}",
              {**ns, "icmpv6_type": 136},
              apply=[SetField(_SLOT["nd_tll"], _mac(mac)), Output(OFPP_IN_PORT)],
              resident=home, stands_down=down)  # fmt: skip
    out = {REG_OUTPORT: key}
    e("ls_out_port_sec", 100, f"{port}: never back to the router", {**out, REG_INPORT: key})
    e("ls_out_port_sec", 50, f"{port}: to the router", out, goto=OUTPUT)
    for itf in sides:
        patch: list[Action | To] = [
            CtClear(),
            SetField(_SLOT["metadata"], router_key(r)),
            _load(REG_INPORT, itf.number),
            _load(REG_OUTPORT, 0),
            _load(REG_NEXTHOP, 0),
            Resubmit(None, table(ROUTER.ingress[0].name)),
        ]
        m: dict[str, Any] = {REG_OUTPORT: key, REG_FLAGS: _NOT_FROM_TUNNEL}
        prio = 100
        if len(sides) > 1:  # the gateway: its IPv6 side by the frame's type, IPv4 the rest
            prio += itf.family == 6
            if itf.family == 6:
                m["eth_type"] = ETH_IP6
        e("phy_out", prio, f"{_iface(itf)}: into router {r.name}'s pipeline here", m,
          apply=patch)  # fmt: skip
        if gw and not itf.gateway:
            del m[REG_FLAGS]
            # routed here as if sent here: the flags of the tunnel go (a port it reaches on
            # the external network has its firewall checked here, not skipped as a frame
            # checked on its sender's chassis)
            e("phy_out", 90, f"{_iface(itf)}: redirected from another chassis: into "
              f"router {r.name}'s pipeline on its active gateway chassis", m,
              apply=[_load(REG_FLAGS, 0), *patch], resident=(gw, True),
              stands_down=sd)  # fmt: skip
    return e.out


def _admission(e: _Emit, live: Sequence[Interface]) -> None:
    at = "lr_in_admission"
    for itf in live:
        mine = {REG_INPORT: itf.number}
        mac = _mac(itf.mac or "")
        me = _iface(itf)
        e(at, 50, f"{me}: IPv{itf.family} to its MAC", {**mine, "eth_dst": mac, "eth_type": _ETH[itf.family]}, goto=NEXT)  # fmt: skip
        if itf.family == 4:
            e(at, 50, f"{me}: ARP to its MAC", {**mine, "eth_dst": mac, "eth_type": ETH_ARP}, goto=NEXT)  # fmt: skip
            e(at, 50, f"{me}: broadcast ARP", {**mine, "eth_dst": BROADCAST, "eth_type": ETH_ARP}, goto=NEXT)  # fmt: skip


def _ip_input(e: _Emit, r: Router, live: Sequence[Interface]) -> None:
    at = "lr_in_ip_input"
    families = sorted({i.family for i in live})
    learning(e, r, live)  # ARP and neighbour discovery: learned from (`neighbour`)
    for fam, side, prefix in _MARTIANS:
        if fam in families:
            f = _SRC[fam] if side == "src" else _DST[fam]
            e(at, 100, f"martian {side} {prefix}: drop", {"eth_type": _ETH[fam], f: _prefix(prefix)})  # fmt: skip
    for itf in live:
        fam, me = itf.family, _iface(itf)
        dst = {"eth_type": _ETH[fam], _DST[fam]: _prefix(itf.address)}
        e(at, 90, f"{me}: echo request to {itf.address}: reply", {**dst, **_echo(fam)},
          apply=_echo_reply(itf), goto=NEXT)  # fmt: skip
        e(at, 80, f"{me}: other traffic to {itf.address}: drop", dst)
        punt = _punt("ttl-expired", r, itf, TIME_EXCEEDED[fam])
        for ttl in (0, 1):
            e(at, 70, f"{me}: TTL {ttl}: to the controller (time exceeded)",
              {REG_INPORT: itf.number, "eth_type": _ETH[fam], "ip_ttl": ttl},
              apply=[Output(OFPP_CONTROLLER)], punt=punt)  # fmt: skip


def _echo(fam: int) -> dict[str, int]:
    if fam == 4:
        return {"ip_proto": 1, "icmp_type": 8}
    return {"ip_proto": 58, "icmpv6_type": 128}


def _echo_reply(itf: Interface) -> list[Action | To]:
    """The request turned into its reply in place, from the address it was sent to; it
    then goes through routing like any packet (and may leave by the port it came in by)."""
    s, fam = _SLOT, itf.family
    src, dst = s[_SRC[fam]], s[_DST[fam]]
    addr = int(ipaddress.ip_address(itf.address))
    return [
        RegMove(src, 0, dst, 0, 32 if fam == 4 else 128),
        SetField(src, addr),
        SetField(s["icmp_type"] if fam == 4 else s["icmpv6_type"], 0 if fam == 4 else 129),
        SetField(s["ip_ttl"], 255),
        SetField(s["in_port"], 0),
    ]


def _punt(reason: str, r: Router, itf: Interface, icmp: tuple[int, int]) -> Punt:
    return Punt(reason, r.id, r.name, itf.number, itf.subnet, itf.network, itf.mac or "",
                itf.address, itf.family, icmp)  # fmt: skip


def route_priority(rt: RouteEntry) -> int:
    """A route's flow priority: longest prefix first, a connected route above a static
    one of the same length; odd priorities are left for a route's exceptions (a
    distributed floating IP's, `nat`)."""
    return 10 + 4 * rt.prefix.prefixlen + 2 * (rt.kind == "connected")


def numbered(routes: Sequence[RouteEntry]) -> list[tuple[RouteEntry, int]]:
    """The installed routes, each with its ECMP number (1..ECMP_MAX; 0: one next hop,
    or past ECMP_MAX: its first)."""
    out, n = [], 0
    for rt in routes:
        if not rt.active:
            continue
        ecmp = len(rt.nexthops) > 1 and n < ECMP_MAX
        n += ecmp
        out.append((rt, n if ecmp else 0))
    return out


def gateway_routes(routes: Sequence[RouteEntry], live: Sequence[Interface]) -> list[RouteEntry]:
    """The installed routes that leave by the gateway (every next hop on it)."""
    gws = {i.number for i in live if i.gateway}
    return [rt for rt in routes if rt.active and all(h.interface in gws for h in rt.nexthops)]


def route_actions(
    r: Router, rt: RouteEntry, by_no: Mapping[int, Interface], n: int
) -> tuple[str, list[Action | To], str | None, GroupDesc | None]:
    """What a route does (rule, actions, goto, group): one next hop, or -- as the
    router's `n`-th ECMP prefix (1..ECMP_MAX; 0: not one) -- a select group."""
    what = f"{rt.kind} {rt.cidr}"
    if not n:
        hop = rt.nexthops[0]
        how = f" via {hop.ip}" if hop.ip else ""
        rule = f"{what}{how}: out of {_iface(by_no[hop.interface])}"
        return rule, [DecTtl(), *_hop(hop, by_no)], NEXT, None
    resolve_at = resolve("lr_in_ip_routing", "lr_in_arp_resolve")
    g = GroupDesc(group_id(r, n), GroupType.SELECT, tuple(
        Bucket((*_hop(h, by_no), Resubmit(None, resolve_at))) for h in rt.nexthops))  # fmt: skip
    via = ", ".join(h.ip or "" for h in rt.nexthops)
    return f"{what} via {via}: ECMP (group {g.group_id})", [DecTtl(), Group(g.group_id)], None, g


def route_match(rt: RouteEntry) -> dict[str, Any]:
    return {"eth_type": _ETH[rt.family], _DST[rt.family]: _prefix(rt.cidr)}


def _routing(
    e: _Emit, r: Router, live: Sequence[Interface], routes: Sequence[RouteEntry],
    gw: str | None,
) -> None:  # fmt: skip
    """Each route; one out of the gateway is routed on the active gateway chassis only,
    elsewhere redirected there as it came (`lr_in_gw_redirect`)."""
    at = "lr_in_ip_routing"
    by_no = {i.number: i for i in live}
    out_gw = {id(rt) for rt in gateway_routes(routes, live)}
    for rt, n in numbered(routes):
        prio, match = route_priority(rt), route_match(rt)
        rule, acts, goto, g = route_actions(r, rt, by_no, n)
        if id(rt) not in out_gw or gw is None:
            e(at, prio, rule, match, apply=acts, goto=goto, group=g)
            continue
        e(at, prio, f"{rule} (active gateway chassis)", match, apply=acts, goto=goto,
          group=g, resident=(gw, True), stands_down=gateway_stands_down(r, gw))  # fmt: skip
        e(at, prio, f"{rule}: elsewhere, to the active gateway chassis", match,
          goto="lr_in_gw_redirect", resident=(gw, False))  # fmt: skip
    for itf in live:
        fam = itf.family
        e(at, 1, f"{_iface(itf)}: no route: to the controller (unreachable)",
          {REG_INPORT: itf.number, "eth_type": _ETH[fam]}, apply=[Output(OFPP_CONTROLLER)],
          punt=_punt("no-route", r, itf, UNREACHABLE[fam]))  # fmt: skip
    unresolved(e, r, live, routes)  # next hops no flow resolves: asked for (`neighbour`)


def _too_big(e: _Emit, r: Router, live: Sequence[Interface], nets: Mapping[str, Network]) -> None:
    """IP longer than the out interface's network's MTU: checked after the next hop is
    resolved (`check_pkt_larger` of the MTU and the Ethernet header, into
    `FLAG_LARGER`), and what is longer goes to the controller with the in interface
    and the MTU -- one flow per (in, out) pair of a family, as OVN's lr_in_larger_pkts."""
    bit = FLAG_LARGER.bit_length() - 1
    for out in live:
        mtu = nets[out.network].mtu
        if not mtu:
            continue
        fam, eth = out.family, _ETH[out.family]
        e("lr_in_chk_pkt_len", 50, f"out of {_iface(out)}: longer than MTU {mtu}?",
          {REG_OUTPORT: out.number, "eth_type": eth},
          apply=[CheckPktLarger(mtu + ETH_HEADER_LEN, _SLOT[REG_FLAGS], bit)], goto=NEXT)  # fmt: skip
        for src in live:
            if src.family != fam:
                continue
            punt = replace(_punt("too-big", r, src, TOO_BIG[fam]), mtu=mtu, key=router_key(r))
            e("lr_in_larger_pkts", 50, f"{_iface(src)} to {_iface(out)}: longer than MTU "
              f"{mtu}: to the controller (too big)",
              {REG_INPORT: src.number, REG_OUTPORT: out.number, "eth_type": eth,
               REG_FLAGS: (FLAG_LARGER, FLAG_LARGER)},
              apply=[Output(OFPP_CONTROLLER)], punt=punt)  # fmt: skip


def _redirect(e: _Emit, live: Sequence[Interface], nets: Mapping[str, Network]) -> None:
    """The chassis redirect: a frame to leave by the gateway on a chassis that is not its
    active one goes back, as it came, into its network to the router's port there --
    flagged, so the output stage tunnels it to the active gateway chassis, where that
    port patches it into the router again and it is routed for real."""
    for itf in live:
        if itf.gateway:
            continue
        net = nets[itf.network]
        patch: list[Action | To] = [
            CtClear(),
            SetField(_SLOT["metadata"], datapath_key(net)),
            _load(REG_INPORT, 0),
            _load(REG_OUTPORT, itf.tunnel_key or 0),
            _load(REG_NEXTHOP, 0),
            _load(REG_FLAGS, FLAG_REDIRECT),
            Resubmit(None, table("phy_out")),
        ]
        e("lr_in_gw_redirect", 50, f"{_iface(itf)}: back to its network, for the active "
          "gateway chassis", {REG_INPORT: itf.number}, apply=patch)  # fmt: skip


def _gateway_nat(e: _Emit, r: Router, live: Sequence[Interface]) -> None:
    """SNAT of the router's IPv4 subnets to the gateway's address (unless `snat: false`)
    and its reverse, through the router's zone (`REG_RZONE`, loaded per chassis); the
    floating IPs' flows come with each floating IP (`nat`)."""
    g = r.gateway
    gw4 = next((i for i in live if i.gateway and i.family == 4), None)
    if g is None or gw4 is None:
        return
    zone = rzone()
    e("lr_in_dnat", 50, f"to the gateway's address {gw4.address}: a reply untranslated",
      {REG_INPORT: gw4.number, "eth_type": ETH_IP, "ipv4_dst": _prefix(gw4.address)},
      apply=[Ct(zone_field=zone, nat=Nat(), table=resolve("lr_in_dnat", NEXT))])  # fmt: skip
    at = "lr_out_snat"
    out = {REG_OUTPORT: gw4.number, "eth_type": ETH_IP}
    snat = Nat("src", gw4.address)
    for itf in live:
        if itf.gateway or itf.family != 4 or not g.snat:
            continue
        e(at, 100, f"{_iface(itf)} {itf.cidr}: as the gateway's address {gw4.address}",
          {**out, "ipv4_src": _prefix(itf.cidr)},
          apply=[Ct(commit=True, zone_field=zone, nat=snat, table=resolve("lr_out_snat", NEXT))])  # fmt: skip
    e(at, 50, "out of the gateway: a reply untranslated", out,
      apply=[Ct(zone_field=zone, nat=Nat(), table=resolve("lr_out_snat", NEXT))])  # fmt: skip


def asking(a: str) -> dict[str, Any]:
    """A match for an ARP request (IPv4) or a neighbour solicitation (IPv6) for `a`."""
    if ipaddress.ip_address(a).version == 4:
        return {"eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": _prefix(a)}
    return _ns(a)


def answer_arp(mac: str, ip: str, itf: Interface) -> list[Action | To]:
    """An ARP request for `ip` at `itf` turned into the reply (from `mac`), sent back out
    of `itf` through the router's egress: what the physical network asks the gateway
    (its frames skip the switch's responder: each chassis with the uplink would answer)."""
    return [*_arp_reply(mac, ip)[:-1], *_back_out(itf)]


def _back_out(itf: Interface) -> list[Action | To]:
    return [
        SetField(_SLOT["in_port"], 0),
        _load(REG_FLAGS, 0),
        _load(REG_OUTPORT, itf.number),
        To(OUTPUT),
    ]


def _gateway_answers(e: _Emit, live: Sequence[Interface], gw: str, down: bool) -> None:
    """The gateway answers ARP and neighbour solicitations for its addresses from the
    physical network, on its active chassis (`down`: not while it is isolated)."""
    at, here = "lr_in_ip_input", (gw, True)
    for itf in live:
        if not itf.gateway:
            continue
        me, mac = _iface(itf), itf.mac or ""
        if itf.family == 4:
            e(at, 120, f"{me}: arp reply for {itf.address}",
              {REG_INPORT: itf.number, "eth_type": ETH_ARP, "arp_op": 1,
               "arp_tpa": _prefix(itf.address)},
              apply=answer_arp(mac, itf.address, itf), resident=here, stands_down=down)  # fmt: skip
            continue
        e("lr_in_admission", 50, f"{me}: solicited-node multicast",
          {REG_INPORT: itf.number, "eth_dst": (0x3333FF000000, 0xFFFFFF000000),
           "eth_type": ETH_IP6}, goto=NEXT, resident=here, stands_down=down)  # fmt: skip
        for a in (itf.address, eui64_link_local(mac)):
            ns = {REG_INPORT: itf.number, **_ns(a)}
            e(at, 125, f"{me}: duplicate address detection for {a}: drop",
              {**ns, "ipv6_src": (0, (1 << 128) - 1)}, resident=here, stands_down=down)  # fmt: skip
            e(at, 120, f"{me}: neighbour advertisement for {a}", ns,
              apply=_na_reply(mac, a), goto="lr_in_nd_na", resident=here, stands_down=down)  # fmt: skip
            e("lr_in_nd_na", 50, f"{me}: the gateway's link-layer address for {a}",
              {**ns, "icmpv6_type": 136},
              apply=[SetField(_SLOT["nd_tll"], _mac(mac)), *_back_out(itf)[:-1]], goto=OUTPUT,
              resident=here, stands_down=down)  # fmt: skip


def rzone() -> tuple[int, int, int]:
    """The router's zone, as `Ct.zone_field` reads it."""
    return (_SLOT[REG_RZONE], 0, 16)


def _hop(h: NextHop, by_no: Mapping[int, Interface]) -> list[Action]:
    itf = by_no[h.interface]
    return [
        _load(REG_OUTPORT, h.interface),
        _load(REG_NEXTHOP, h.id),
        SetField(_SLOT["eth_src"], _mac(itf.mac or "")),
    ]


def _delivery(e: _Emit, live: Sequence[Interface], nets: Mapping[str, Network]) -> None:
    for itf in live:
        net = nets[itf.network]
        patch: list[Action | To] = [
            CtClear(),
            SetField(_SLOT["metadata"], datapath_key(net)),
            _load(REG_INPORT, itf.tunnel_key or 0),
            _load(REG_OUTPORT, 0),
            To("ls_in_l2_lkup"),
        ]
        e("lr_out_delivery", 50, f"{_iface(itf)}: into network {net.name}'s lookup here",
          {REG_OUTPORT: itf.number}, apply=patch)  # fmt: skip


# -- per port: the next hops a port of an attached network is ------------------------------
@dataclass(frozen=True)
class Attach:
    """A router as a port of one of its networks sees it (what the port's builder reads)."""

    router: str  # id
    name: str
    key: int  # the router's datapath key
    ports: tuple[tuple[int, int], ...]  # (interface number, family) on this network
    hops: tuple[tuple[int, str, int], ...]  # static next hops here: (id, address, interface)


def _attach(state: State) -> dict[str, tuple[Attach, ...]]:
    """Network id -> the routers attached to it (admitted, up)."""
    out: dict[str, list[Attach]] = {}
    for r in state.all("router"):
        if r.tunnel_key is None or not r.admin_up:
            continue
        live = _live(interfaces(state, r))
        on: dict[str, list[Interface]] = {}
        for i in live:
            on.setdefault(i.network, []).append(i)
        hops = {(h.id, h.ip, h.interface) for rt in build(r, live) for h in rt.nexthops if h.ip}
        for net_id, its in on.items():
            nos = {i.number for i in its}
            here = tuple(sorted(h for h in hops if h[2] in nos))
            ports = tuple((i.number, i.family) for i in its)
            out.setdefault(net_id, []).append(Attach(r.id, r.name, router_key(r), ports, here))
    return {n: tuple(a) for n, a in out.items()}


def _addresses(port: Port) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    """(address or prefix, MAC) a port answers for: its own, then its address pairs'."""
    mac = port.mac or ""
    out = [(ipaddress.ip_network(a), mac) for a in port.ips]
    out += [(ipaddress.ip_network(p.ip), p.mac or mac) for p in port.allowed_address_pairs]
    return out


def port_flows(net: Network, port: Port, *attached: Attach) -> list[LFlow]:
    """`lr_in_arp_resolve` for one port: its addresses (and any static next hop among
    them) -> its MAC, in each router attached to its network."""
    if not port.mac:
        return []
    owned = _addresses(port)
    out: list[LFlow] = []
    for a in attached:
        e = _Emit("port", port, _Datapath(a.router), key=a.key)
        for no, fam in a.ports:
            for prefix, mac in owned:
                if prefix.version != fam:
                    continue
                m = {REG_OUTPORT: no, REG_NEXTHOP: 0, "eth_type": _ETH[fam],
                     _DST[fam]: (int(prefix.network_address), int(prefix.netmask))}  # fmt: skip
                e("lr_in_arp_resolve", 100 + prefix.prefixlen, f"router {a.name}: {prefix} is {port.name}'s",
                  m, apply=[SetField(_SLOT["eth_dst"], _mac(mac))], goto=NEXT)  # fmt: skip
        for hid, ip, no in a.hops:
            addr = ipaddress.ip_address(ip)
            best = max(((p, mac) for p, mac in owned if addr in p), key=lambda pm: pm[0].prefixlen,
                       default=None)  # fmt: skip
            if best is None:
                continue
            prefix, mac = best
            e("lr_in_arp_resolve", 100 + prefix.prefixlen,
              f"router {a.name}: next hop {ip} is {port.name}'s",
              {REG_OUTPORT: no, REG_NEXTHOP: hid}, apply=[SetField(_SLOT["eth_dst"], _mac(mac))],
              goto=NEXT)  # fmt: skip
        out += e.out
    return out


ROUTERS = datapath_kind(Kind("router", _objects, router_flows, _attach, port_flows))
