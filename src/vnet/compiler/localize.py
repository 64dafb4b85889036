"""Logical flows + bindings -> the flows of one chassis.

`localize` is a pure function: the logical flows of the networks that have a
port on this chassis (a chassis carries no flows for networks it does not
host) -- and of every router of those networks, with all of that router's
networks (`hosted`: routing happens on the sender's chassis, so the routed
frame must find the destination network's flows and tunnels here; and so on
through routers behind routers, as OVN's local datapaths) -- plus the two
physical stages -- `phy_in` maps each local OpenFlow
port to its network and logical port, `phy_out` maps a logical output port
back to its OpenFlow port.  OpenFlow port numbers come from the switch
(`ofports`: interface name -> number, read from its port description), so
the model never needs to know them.

Many chassis are joined by flow-based tunnels, as in OVN: every switch has
one tunnel port per encapsulation (`tunnel_iface`), and a frame for a port
bound to another chassis leaves through the port of *that* chassis'
encapsulation with `tun_id` = the network's VNI, `tun_dst` = its underlay
address and, for Geneve, the logical ingress and egress ports in
`tun_metadata0` (OVN's option layout: 15 bits in, 16 bits out).  The mesh
is implicit: a chassis tunnels only to chassis that host ports of a network
it hosts, and knows every remote port's MAC from the model (no
flood-and-learn across the overlay).  A flood is split here: each local
port gets its copy, and each other chassis with ports among the flood's
targets one copy (head-end replication) under a flood key (bit 15 set), which
the receiver floods to its own ports only -- a frame out of a tunnel is
flagged (`reg5`) and never goes back into one.  On receive, a Geneve frame's
option restores the logical ports (unicast goes straight to egress port
security); VXLAN and NVGRE carry only the VNI, so the destination MAC is
looked up again.

Each port bound here (or still plugged here) gets a conntrack zone of its
own on this chassis (`zones`: 1-65535, from a hash of the port's id, the
next free one on a collision -- so a port keeps its zone while ports come
and go, unless a newcomer with a smaller id takes its hashed slot), loaded
into `REG_ZONE` as its frames enter (`phy_in`) and as frames for it enter
the egress pipeline (`ls_out_zone`, where a frame for a port bound
elsewhere skips the firewall: that port's chassis runs it).

An external network is reached through the physical network, never through
tunnels (OVN's localnet ports): on a chassis whose `physnets` maps the
network's physnet to an uplink the switch has, that uplink is the network's
localnet port (`LOCALNET_KEY`).  Frames from the uplink -- untagged for a
flat network, else with the network's VLAN ID, popped -- enter the network's
lookup flagged `FLAG_FROM_LOCALNET` (other VLANs and, on a VLAN network,
untagged frames are dropped); frames for the localnet port, and for a port
of the network bound to another chassis (the physical network carries them
there), leave by the uplink, tagged on a VLAN network -- unless they came in
by it.  A flood's copies for other chassis become one copy to the localnet
port; a chassis without the uplink reaches no other chassis on the network.

The groups the kept flows name (a router's ECMP) are `local_groups`, for
the same chassis.

Incremental like the compiler: the logical flows arrive sorted, so only the
chassis' stages are sorted again with the bindings, and each binding's
flows are memoised (`memo`) on what their builder read, so one changed port
costs one binding, not all.
"""

from __future__ import annotations

import bisect
import ipaddress
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from ..model.l3 import active_gateway
from ..model.objects import ENCAPS, Chassis, Network, Port, Router, tunnel_iface
from ..model.routing import interfaces
from ..model.rules import State
from ..pipeline.actions import Action, Output, PopVlan, PushVlan, RegMove, SetField
from ..pipeline.fields import lookup
from ..pipeline.flow import Flow
from ..pipeline.groups import GroupDesc
from .logical import _SLOT, LFlow, To, _Emit, _load, _order, datapath_key, resolved
from .memo import Memo, recall
from .router import router_key
from .stages import (
    FLAG_FROM_LOCALNET,
    FLAG_FROM_TUNNEL,
    FLAG_REDIRECT,
    LOCALNET_KEY,
    NEXT,
    PHY_IN,
    PHY_OUT,
    REG_FLAGS,
    REG_INPORT,
    REG_OUTPORT,
    REG_RZONE,
    REG_ZONE,
    SWITCH,
    stage_of,
    table,
)
from .switch import deliver

__all__ = [
    "FLOOD_KEY",
    "ZONE_STAGE",
    "Memo",
    "hosted",
    "local_groups",
    "local_ports",
    "localize",
    "peers",
    "zones",
]

FLOOD_KEY = 0x8000  # reg7 / the Geneve option's egress port: "flood to your own ports"
_FLAG = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)
_NOT_FROM_TUNNEL = (0, FLAG_FROM_TUNNEL)
_IN_BITS, _OUT_BITS = 15, 16
ZONE_STAGE = "ls_out_zone"
RZONE_STAGE = "lr_in_zone"
_ZONES = 65535


def zones(ports: Iterable[Port | Router]) -> dict[str, int]:
    """Port id -> its conntrack zone on a chassis, for the ports bound (or plugged) there
    and the routers hosted there (their NAT)."""
    used: set[int] = set()
    out = {}
    for pid in sorted({p.id for p in ports}):
        z = zlib.crc32(pid.encode()) % _ZONES + 1
        while z in used:
            z = z % _ZONES + 1
        used.add(z)
        out[pid] = z
    return out


def tunnel_ports(ofports: Mapping[str, int]) -> dict[str, int]:
    """This switch's tunnel ports: encapsulation -> OpenFlow port."""
    return {k: ofports[tunnel_iface(k)] for k in ENCAPS if tunnel_iface(k) in ofports}


def peers(state: State, chassis: Chassis, kinds: Sequence[str] = ENCAPS) -> dict[str, Chassis]:
    """The other chassis a tunnel of one of `kinds` reaches (an IPv4 underlay address)."""
    out = {}
    for c in state.all("chassis"):
        ok = c.id != chassis.id and c.underlay and c.encap in kinds
        if ok and ipaddress.ip_address(c.underlay).version == 4:
            out[c.id] = c
    return out


def hosted(state: State, nets: set[str], chassis: str | None = None) -> tuple[set[str], set[str]]:
    """The networks and routers a chassis whose ports are on `nets` needs: every router
    of those networks, every network of those routers (its gateway's too), and so on (a
    frame routed here may be routed again into a network behind another router, all on
    this chassis) -- and every router `chassis` is a gateway chassis of, with its
    networks, ports or not (it routes their north-south traffic)."""
    links: dict[str, set[str]] = {}  # network or router id -> the ids it is patched to
    seeds = set(nets)
    for r in state.all("router"):
        attached = [s.network for i in r.interfaces if (s := state.get("subnet", i.subnet))]
        if r.gateway is not None:
            attached.append(r.gateway.network)
            if chassis is not None and chassis in r.gateway.chassis:
                seeds.add(r.id)
        for net_id in attached:
            links.setdefault(r.id, set()).add(net_id)
            links.setdefault(net_id, set()).add(r.id)
    seen, todo = set(seeds), list(seeds)
    while todo:
        for other in links.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    routers = {i for i in seen if state.get("router", i) is not None}
    return seen - routers, routers


def local_groups(
    lflows: Sequence[LFlow], state: State, chassis: Chassis, ofports: Mapping[str, int]
) -> list[GroupDesc]:
    """The groups the flows of `chassis` name (a router's ECMP), by id."""
    local = local_ports(state, chassis, ofports)
    leaving = _leaving_ports(state, peers(state, chassis, tuple(tunnel_ports(ofports))), ofports)
    nets, routers = hosted(state, {p.network for p, _ in local + leaving}, chassis.id)
    kept = nets | routers
    used = {lf.group.group_id: lf.group for lf in lflows
            if lf.group is not None and lf.datapath in kept}  # fmt: skip
    return [used[g] for g in sorted(used)]


def _leaving_ports(
    state: State, far: Mapping[str, Chassis], ofports: Mapping[str, int]
) -> list[tuple[Port, int]]:
    """Ports bound to another chassis but still plugged here (a workload in migration)."""
    return [(p, ofports[p.iface]) for p in state.all("port")
            if p.chassis in far and p.iface in ofports]  # fmt: skip


def local_ports(
    state: State, chassis: Chassis, ofports: Mapping[str, int]
) -> list[tuple[Port, int]]:
    """The ports bound to `chassis` whose interface the switch has, with its number."""
    out = []
    for p in state.all("port"):
        if p.chassis == chassis.id and p.iface in ofports:
            out.append((p, ofports[p.iface]))
    return out


def localize(
    lflows: Sequence[LFlow],
    state: State,
    chassis: Chassis,
    ofports: Mapping[str, int],
    memo: Memo | None = None,
) -> list[Flow]:
    """The flows of `chassis`, sorted as `Compiler.compile` sorts them.

    `memo` (kept by the caller across calls) remembers each port's flows here
    on what their builder read of the model and the OpenFlow port numbers, so a
    change to one port rebuilds one binding; entries of ports no longer here are
    dropped.
    """
    local = local_ports(state, chassis, ofports)
    tunnels = tunnel_ports(ofports)
    far = peers(state, chassis, tuple(tunnels))
    # ports bound elsewhere but still plugged here (a workload in migration): their
    # frames still enter here until the cable is gone; frames for them go to the new chassis
    leaving = _leaving_ports(state, far, ofports)
    nets, routers = hosted(
        state, {p.network for p, _ in local} | {p.network for p, _ in leaving}, chassis.id
    )
    kept = nets | routers
    # (network, port key) -> the other chassis the port is bound to
    remote: dict[tuple[str, int], Chassis] = {}
    remote_ports: list[Port] = []
    for p in state.all("port"):
        if p.network in nets and p.chassis in far:
            remote[(p.network, p.tunnel_key or 0)] = far[p.chassis]
            remote_ports.append(p)
    here: dict[str, set[int]] = {}
    for p, _ in local:
        here.setdefault(p.network, set()).add(p.tunnel_key or 0)
    # external network id -> its uplink's OpenFlow port here (None: no uplink)
    uplinks: dict[str, int | None] = {}
    for net_id in nets:
        n = state.get("network", net_id)
        if n is not None and n.external:
            iface = chassis.physnets.get(n.physnet or "")
            uplinks[net_id] = ofports.get(iface) if iface else None
            if uplinks[net_id] is not None:
                here.setdefault(net_id, set()).add(LOCALNET_KEY)
    routed = [r for r in state.all("router") if r.id in routers]
    zone_of = zones([p for p, _ in local] + [p for p, _ in leaving] + routed)
    first, last, zt = table(PHY_IN.name), table(PHY_OUT.name), table(ZONE_STAGE)
    rzt = table(RZONE_STAGE)
    head: list[LFlow] = []
    tail: list[LFlow] = []
    mid: list[Flow] = []
    zone: list[LFlow] = []
    rzone: list[LFlow] = []
    floods: dict[tuple[str, frozenset[str]], int] = {}  # (network, chassis ids) -> flood key
    for lf in lflows:  # sorted by table: only the chassis' stages need merging
        if lf.datapath is not None and lf.datapath not in kept:
            continue
        if lf.resident is not None and (lf.resident[0] == chassis.id) != lf.resident[1]:
            continue
        t = lf.flow.table
        if t == first:
            head.append(lf)
        elif t == last:
            tail.append(lf)
        elif t == zt:
            zone.append(lf)
        elif lf.flood:
            mid.append(_split(lf, here, remote, floods, uplinks))
        else:
            mid.append(lf.flow)
    seen: set[tuple[str, ...]] = set()

    def cached(
        what: str, port: Port, objs: Sequence[object], build: Callable[..., list[LFlow]],
        args: tuple[object, ...],
    ) -> list[LFlow]:  # fmt: skip
        """One port's flows on this chassis, from `memo` while what they read is unchanged."""
        k = (chassis.id, port.id, what)
        seen.add(k)
        return recall(memo, k, objs, build, args)[0]

    for port, ofport in local:
        net = state.get("network", port.network)
        z = zone_of[port.id]
        flows = cached("binding", port, (chassis, net, port), _binding, (ofport, z))
        head.append(flows[0])
        tail.append(flows[1])
        zone.append(flows[2])
    for port, ofport in leaving:
        net = state.get("network", port.network)
        peer = far[port.chassis or ""]
        z = zone_of[port.id]
        head += cached("leaving", port, (chassis, net, port, peer), _leaving, (ofport, z))
    for port in remote_ports:
        net = state.get("network", port.network)
        peer = far[port.chassis or ""]
        if port.network in uplinks:
            up = uplinks[port.network]
            if up is not None:
                tail += _remote_physical(net, port, peer, up)
            continue
        tail += cached("remote", port, (net, port, peer), _remote, (dict(tunnels),))
    for (net_id, targets), fkey in floods.items():
        net = state.get("network", net_id)
        tail += _flood_out(net, fkey, [far[c] for c in sorted(targets)], tunnels)
    for net_id in sorted(nets):
        if net_id in uplinks:
            up = uplinks[net_id]
            if up is not None:
                head_, tail_ = _localnet(state.get("network", net_id), up)
                head += head_
                tail += tail_
            continue
        head += _receive(state.get("network", net_id), tunnels)
    for r in routed:
        rzone += _router_zone(r, zone_of[r.id])
        gw = active_gateway(r, state)
        if gw is not None and gw in far:
            tail += _redirect_out(state, r, far[gw], nets, tunnels)
    if memo is not None:
        for k in [k for k in memo if k[0] == chassis.id and k not in seen]:
            del memo[k]
    head.sort(key=_order)
    tail.sort(key=_order)
    zone.sort(key=_order)
    rzone.sort(key=_order)
    cut = bisect.bisect_left(mid, zt, key=lambda f: f.table)
    cut2 = bisect.bisect_left(mid, rzt, key=lambda f: f.table)
    return ([lf.flow for lf in head] + mid[:cut] + [lf.flow for lf in zone] + mid[cut:cut2]
            + [lf.flow for lf in rzone] + mid[cut2:] + [lf.flow for lf in tail])  # fmt: skip


def _router_zone(r: Router, zone: int) -> list[LFlow]:
    """The router's conntrack zone here (its NAT's), into `REG_RZONE`."""
    e = _Emit("router", r, r, key=router_key(r))
    e(RZONE_STAGE, 100, f"conntrack zone {zone} here", {}, apply=[_load(REG_RZONE, zone)],
      goto=NEXT)  # fmt: skip
    return e.out


def _redirect_out(
    state: State, r: Router, gw: Chassis, nets: set[str], tunnels: Mapping[str, int]
) -> list[LFlow]:
    """The output stage for a router's frames redirected to its active gateway chassis
    (`router._redirect`): into the tunnel to it, on each interface's network."""
    out: list[LFlow] = []
    for itf in interfaces(state, r):
        net = state.get("network", itf.network)
        if itf.gateway or not itf.tunnel_key or net is None or net.id not in nets:
            continue
        e = _Emit("router", r, net)
        m = {REG_OUTPORT: itf.tunnel_key, REG_FLAGS: (FLAG_REDIRECT, FLAG_REDIRECT)}
        e(PHY_OUT.name, 110, f"redirected: {gw.encap} to the active gateway chassis "
          f"{gw.name} ({gw.underlay})", m,
          apply=_tunnel_to(datapath_key(net), itf.tunnel_key, [gw], tunnels))  # fmt: skip
        out += e.out
    return out


def _split(
    lf: LFlow,
    here: Mapping[str, set[int]],
    remote: Mapping[tuple[str, int], Chassis],
    floods: dict[tuple[str, frozenset[str]], int],
    uplinks: Mapping[str, int | None],
) -> Flow:
    """A flood's actions on this chassis: its own ports, then one copy per other chassis
    (on an external network: one copy to the localnet port, for the ports elsewhere too)."""
    net = lf.datapath or ""
    mine = here.get(net, set())
    targets = frozenset(remote[(net, k)].id for k in lf.flood if (net, k) in remote)
    keys = [k for k in lf.flood if k in mine]
    if net in uplinks:
        if targets and LOCALNET_KEY in mine and LOCALNET_KEY not in keys:
            keys.append(LOCALNET_KEY)
        targets = frozenset()
    acts: list[Action | To] = deliver(keys)
    if targets:
        fkey = floods.setdefault(
            (net, targets), FLOOD_KEY | len([n for n, _ in floods if n == net])
        )
        acts += [_load(REG_OUTPORT, fkey), To(PHY_OUT.name)]
    ins = replace(lf.flow.instructions, apply=resolved(stage_of(lf.flow.table), acts))
    return replace(lf.flow, instructions=ins)


def _tunnel_to(
    vni: int, out_key: int, chassis: Sequence[Chassis], tunnels: Mapping[str, int]
) -> list[Action]:
    """Set the tunnel's key (and Geneve option), then one output per chassis."""
    s = _SLOT
    acts: list[Action] = [_load("tun_id", vni)]
    if any(c.encap == "geneve" for c in chassis):
        acts += [
            _load("tun_metadata0", out_key),
            RegMove(s[REG_INPORT], 0, s["tun_metadata0"], _OUT_BITS, _IN_BITS),
        ]
    for c in chassis:
        acts += [_load("tun_dst", int(ipaddress.IPv4Address(c.underlay))),
                 Output(tunnels[c.encap])]  # fmt: skip
    return acts


def _remote(net: Network, port: Port, peer: Chassis, tunnels: Mapping[str, int]) -> list[LFlow]:
    """The output stage for a port bound to another chassis: into the tunnel to it."""
    e = _Emit("port", port, net)
    match = {REG_OUTPORT: port.tunnel_key or 0, REG_FLAGS: _NOT_FROM_TUNNEL}
    rule = f"bound to {peer.name}: {peer.encap} to {peer.underlay}"
    e(PHY_OUT.name, 100, rule, match, apply=_tunnel_to(datapath_key(net), port.tunnel_key or 0, [peer], tunnels))  # fmt: skip
    return e.out


def _to_uplink(net: Network, uplink: int) -> list[Action]:
    if net.vlan is None:
        return [Output(uplink)]
    return [PushVlan(), SetField(_VLAN_VID, 0x1000 | net.vlan), Output(uplink)]


_NOT_FROM_OUTSIDE = (0, FLAG_FROM_LOCALNET)
_VLAN_VID = lookup("vlan_vid").index


def _remote_physical(net: Network, port: Port, peer: Chassis, uplink: int) -> list[LFlow]:
    """The output stage for a port of an external network bound to another chassis:
    out of the uplink, the physical network carries it there."""
    e = _Emit("port", port, net)
    match = {REG_OUTPORT: port.tunnel_key or 0, REG_FLAGS: _NOT_FROM_OUTSIDE}
    e(PHY_OUT.name, 100, f"bound to {peer.name}: by the physical network", match,
      apply=_to_uplink(net, uplink))  # fmt: skip
    return e.out


def _localnet(net: Network, uplink: int) -> tuple[list[LFlow], list[LFlow]]:
    """The input and output stages of an external network's localnet port here."""
    e = _Emit("network", net, net)
    seg = f"VLAN {net.vlan}" if net.vlan is not None else "untagged"
    vid = 0 if net.vlan is None else 0x1000 | net.vlan
    pop: list[Action] = [] if net.vlan is None else [PopVlan()]
    load = [_load(REG_INPORT, LOCALNET_KEY), _load(REG_FLAGS, FLAG_FROM_LOCALNET)]
    e(PHY_IN.name, 100, f"physnet {net.physnet} ({seg}): localnet",
      {"in_port": uplink, "vlan_vid": vid}, apply=[*pop, *load], enter=datapath_key(net),
      goto=SWITCH.reentry)  # fmt: skip
    head = e.out
    e = _Emit("network", net, net)
    e(PHY_OUT.name, 100, f"localnet: physnet {net.physnet} ({seg})",
      {REG_OUTPORT: LOCALNET_KEY}, apply=_to_uplink(net, uplink))  # fmt: skip
    return head, e.out


def _flood_out(
    net: Network, fkey: int, chassis: Sequence[Chassis], tunnels: Mapping[str, int]
) -> list[LFlow]:
    """The output stage for a flood key: one copy to each chassis (head-end replication)."""
    e = _Emit("network", net, net)
    names = ", ".join(c.name for c in chassis)
    match = {REG_OUTPORT: fkey, REG_FLAGS: _NOT_FROM_TUNNEL}
    e(PHY_OUT.name, 100, f"flood to {names}", match, apply=_tunnel_to(datapath_key(net), FLOOD_KEY, chassis, tunnels))  # fmt: skip
    return e.out


def _receive(net: Network, tunnels: Mapping[str, int]) -> list[LFlow]:
    """The input stage for frames of `net` out of each tunnel port."""
    key = datapath_key(net)
    s = _SLOT
    e = _Emit("network", net, net)
    at = PHY_IN.name
    for kind, ofport in sorted(tunnels.items()):
        m = {"in_port": ofport, "tun_id": key}
        flag = _load(REG_FLAGS, FLAG_FROM_TUNNEL)
        if kind != "geneve":
            e(at, 100, f"{kind} VNI {key}: look the destination up", m,
              apply=[flag], enter=key, goto=SWITCH.reentry)  # fmt: skip
            continue
        src = RegMove(s["tun_metadata0"], _OUT_BITS, s[REG_INPORT], 0, _IN_BITS)
        dst = RegMove(s["tun_metadata0"], 0, s[REG_OUTPORT], 0, _OUT_BITS)
        e(at, 110, f"geneve VNI {key}: flood to this chassis' ports",
          {**m, "tun_metadata0": (FLOOD_KEY, FLOOD_KEY)}, apply=[flag, src], enter=key,
          goto=SWITCH.reentry)  # fmt: skip
        e(at, 100, f"geneve VNI {key}: the option's logical ports", m,
          apply=[flag, src, dst], enter=key, goto=SWITCH.egress[0].name)  # fmt: skip
    return e.out


def _binding(chassis: Chassis, net: Network, port: Port, ofport: int, zone: int) -> list[LFlow]:
    """The input, output and zone stages for one port bound here."""
    e = _Emit("port", port, net)
    e(ZONE_STAGE, 100, f"bound here: conntrack zone {zone}", {REG_OUTPORT: port.tunnel_key or 0},
      apply=[_load(REG_ZONE, zone)], goto=NEXT)  # fmt: skip
    return [
        _enter(net, port, ofport, f"binding on {chassis.name}", zone),
        *_exit(chassis, net, port, ofport),
        *e.out,
    ]


def _leaving(
    chassis: Chassis, net: Network, port: Port, peer: Chassis, ofport: int, zone: int
) -> list[LFlow]:
    """The input stage for a port bound elsewhere but still plugged here."""
    return [_enter(net, port, ofport, f"plugged on {chassis.name}, bound to {peer.name}", zone)]


def _enter(net: Network, port: Port, ofport: int, rule: str, zone: int) -> LFlow:
    e = _Emit("port", port, net)
    load = [_load(REG_INPORT, port.tunnel_key or 0), _load(REG_ZONE, zone)]
    e(PHY_IN.name, 100, rule, {"in_port": ofport}, apply=load,
      enter=datapath_key(net), goto=SWITCH.ingress[0].name)  # fmt: skip
    return e.out[0]


def _exit(chassis: Chassis, net: Network, port: Port, ofport: int) -> list[LFlow]:
    e = _Emit("port", port, net)
    e(PHY_OUT.name, 100, f"binding on {chassis.name}", {REG_OUTPORT: port.tunnel_key or 0},
      apply=[Output(ofport)])  # fmt: skip
    return e.out
