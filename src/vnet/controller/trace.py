"""`vnet trace`: one packet's whole path through the model's flows, chassis after chassis.

A trace starts where a packet enters a chassis' switch -- from a port's
workload, or from the physical network by an external network's uplink on a
chassis -- and runs the flows that chassis would have (`localize` of the
current model, its groups too) in a scratch vnet switch (`datapath.Switch`,
no ports, an empty connection tracker): its `trace` is the forwarding code
recorded, follows every `ct(table=)` into its table (a new connection unless
the tracker knows better, as `ofproto/trace` assumes) and shows what a
`ct(nat)` translates, by the datapath's own NAT.  Nothing is sent and no
switch is asked: the trace is of the model, whether a chassis is connected
or not (unconnected, OpenFlow ports are numbered as `model_ofports` says).

Each pass is read back, in the order the switch ran it:
- the tables visited, each a *step*: its stage (`stages.stage_of`), the
  flow's priority, cookie and origin, and the logical datapath it ran in
  -- the datapath key every datapath-scoped flow matches in `metadata`
  names a network (`switch NAME`) or a router (`router NAME`); a stage's
  default flow and the chassis' `phy_in` flows match none and belong to
  the datapath around them.  Consecutive steps in one datapath on one
  chassis are one *crossing*: a routed packet crosses switch, router,
  switch;
- each `ct(table=)` with NAT whose recirculated packet differs from the one
  that met it is a *translation*: the 5-tuple before and after (`nat:
  10.2.0.2:4000 -> 198.51.100.7:53 becomes 203.0.113.2:4000 -> ...`), with the
  datapath, chassis and stage where it happened;
- the packet's datapath operations are replayed on its flow key (field
  writes, tunnel metadata, VLAN tags, clones) to the packet as it stands at
  each output, and each output is an *exit*: a port bound here (delivered),
  an external network's uplink (to the physical network; not followed
  further), the controller (with the origin of the flow that sent it), or
  a tunnel port -- then the chassis whose underlay address is `tun_dst` takes
  the packet as its tunnel port would (the inner frame as it left, `tun_id`,
  `tun_src`, `tun_dst` and, for Geneve, the option's logical ports; no
  registers, no metadata) and the trace goes on there: to the destination
  port's chassis, or for north-south traffic from a chassis that is not the
  router's active gateway chassis, redirected to it (`lr_in_gw_redirect`).
  A packet that leaves nowhere ends in a drop, with the switch's reason.

At most `MAX_HOPS` chassis passes are followed (a flood's copies each make
one).  `PathTrace.format` prints the path (crossings with their steps and
translations, exits) and then each pass' `ofproto/trace`-like tree;
`as_dict` gives the same for machines.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..compiler.nat import distributed
from ..compiler.stages import stage_of
from ..datapath.switch import FailMode, Switch
from ..model.l3 import active_gateway, routers_of
from ..model.objects import ENCAPS, Chassis, Network, Port, Router, tunnel_iface
from ..model.routing import interfaces
from ..model.rules import ModelError, State
from ..packet import flowkey as fk
from ..pipeline.actions import Ct
from ..pipeline.fields import BY_INDEX, FieldError
from ..pipeline.flow import Flow, FlowMod, FlowModCommand
from ..pipeline.groups import GroupDesc, GroupMod, GroupModCommand
from ..pipeline.odp import format_ops
from ..pipeline.ofctl import FlowSyntaxError, format_key, parse_packet
from ..pipeline.trace import TraceNode, Tracer

__all__ = [
    "MAX_HOPS",
    "PathTrace",
    "Start",
    "model_ofports",
    "outside_start",
    "port_start",
    "scratch_switch",
    "trace_path",
]

MAX_HOPS = 16
_META = re.compile(r"(?:^|,)metadata=(0x[0-9a-f]+|\d+)(?:,|$)")
_ID = re.compile(r" \([a-z]*-?[0-9a-f-]{8,}\)$")
_PORTS = {6: "tcp", 17: "udp", 132: "sctp"}
_NO_TUN = [0] * (fk.TUN_SLOTS.stop - fk.TUN_SLOTS.start)


def model_ofports(state: State, chassis: Chassis) -> dict[str, int]:
    """OpenFlow port numbers for a chassis no switch reports: its bound ports in
    binding order from 1, then its tunnel ports, then its uplinks."""
    out: dict[str, int] = {}
    for p in state.all("port"):
        if p.chassis == chassis.id and p.iface not in out:
            out[p.iface] = len(out) + 1
    for name in [tunnel_iface(k) for k in ENCAPS] + sorted(set(chassis.physnets.values())):
        out.setdefault(name, len(out) + 1)
    return out


def scratch_switch(name: str, flows: Sequence[Flow], groups: Sequence[GroupDesc]) -> Switch:
    """A portless vnet switch holding a chassis' flows and groups, to trace on."""
    sw = Switch(name, fail_mode=FailMode.SECURE)
    sw.set_controllers(1)
    sw.commit([GroupMod(GroupModCommand.ADD, g) for g in groups])
    sw.commit([FlowMod(FlowModCommand.ADD, f) for f in flows])
    return sw


@dataclass
class Start:
    """Where the packet enters: a chassis, its flow key there, and in words."""

    chassis: Chassis
    key: tuple[int, ...]
    entered: str
    origin: dict[str, Any]  # {"port": name} | {"outside": network, "uplink": iface}


def _fields(text: str) -> set[str]:
    return {t.split("=", 1)[0].strip() for t in text.split(",") if t.strip()}


def _value(text: str, names: Sequence[str]) -> str | None:
    """The value the packet text gives the first of `names` it has."""
    for t in text.split(","):
        k, _, v = t.partition("=")
        if k.strip() in names and v.strip():
            return v.strip()
    return None


def _parse(text: str, defaults: Mapping[str, str]) -> tuple[int, ...]:
    try:
        return parse_packet(text, defaults)
    except (FlowSyntaxError, FieldError) as e:
        raise ModelError("invalid", ("packet",), str(e)) from None


def _router_mac(state: State, port: Port, dst: str) -> str | None:
    """The MAC of the router interface on `port`'s network a packet to `dst` goes to:
    the port's gateway there, of `dst`'s family -- None for a destination on one of
    the port's subnets (the workload asks for it, not its gateway)."""
    try:
        to = ipaddress.ip_address(dst)
    except ValueError:
        return None
    fam = to.version
    mine = [ipaddress.ip_address(a) for a in port.ips]
    cidrs = [ipaddress.ip_network(s.cidr) for s in state.subnets_of(port.network)]
    if any(to in c and any(a in c for a in mine) for c in cidrs):
        return None
    for r in state.all("router"):
        for itf in interfaces(state, r):
            if itf.network != port.network or itf.family != fam or itf.gateway or not itf.mac:
                continue
            if any(a in ipaddress.ip_network(itf.cidr) for a in mine):
                return itf.mac
    return None


def _outside_owner(state: State, net: Network, dst: str | None) -> tuple[str | None, str | None]:
    """The MAC the physical network reaches `dst` of external network `net` by, and the
    chassis (id) that answers for it there: a floating IP's (its own MAC on its port's
    chassis when distributed, else the gateway's on the router's active gateway
    chassis), a router gateway's, a port's."""
    if dst is None:
        return None, None
    for f in state.all("floating_ip"):
        if f.network != net.id or f.ip != dst:
            continue
        pid = f.port or (f.port_forwardings[0].port if f.port_forwardings else None)
        port = state.get("port", pid) if pid else None
        routers = routers_of(state, port, net.id) if port is not None else []
        if port is None or not routers or routers[0].gateway is None:
            return None, None
        ch = state.get("chassis", port.chassis) if port.chassis else None
        if f.port == port.id and distributed(f, port, net, ch):
            return f.mac, port.chassis
        return routers[0].gateway.mac, active_gateway(routers[0], state)
    for r in state.all("router"):
        g = r.gateway
        if g is not None and g.network == net.id and dst in (g.ip, g.ip6):
            return g.mac, active_gateway(r, state)
    for p in state.ports_of(net.id):
        if dst in p.ips:
            return p.mac, p.chassis
    return None, None


def port_start(
    state: State, port: Port, packet: str, ofports_of: Callable[[Chassis], Mapping[str, int]]
) -> Start:
    """A packet from `port`'s workload: `in_port`, `dl_src` and its own source address
    filled in, and a destination the model knows gives `dl_dst` -- as the workload
    would after ARP: the owner's MAC on the port's network, else (off its subnets)
    its router's there."""
    if port.chassis is None:
        raise ModelError("invalid", ("port",), f"port {port.name!r} is bound to no chassis")
    ch = state.get("chassis", port.chassis)
    ofports = ofports_of(ch)
    text = packet.strip()
    fields = _fields(text)
    defaults = {"in_port": str(ofports[port.iface])}
    if port.mac:
        defaults["dl_src"] = port.mac
    dst = _value(text, ("nw_dst", "ipv6_dst"))
    if "dl_dst" not in fields and "eth_dst" not in fields and dst is not None:
        owner = next((p for p in state.ports_of(port.network) if dst in p.ips), None)
        mac = owner.mac if owner is not None else _router_mac(state, port, dst)
        if mac:
            defaults["dl_dst"] = mac
    # the workload's own addresses, each used only by a packet of its family
    for name, v6 in (("nw_src", False), ("ipv6_src", True)):
        addr = next((a for a in port.ips if (":" in a) == v6), None)
        if addr is not None:
            defaults[name] = addr
    key = _parse(text, defaults)
    entered = f"from port {port.name} (in_port {ofports[port.iface]})"
    return Start(ch, key, entered, {"port": port.name})


def outside_start(
    state: State,
    net: Network,
    chassis: Chassis | None,
    packet: str,
    ofports_of: Callable[[Chassis], Mapping[str, int]],
) -> Start:
    """A packet from the physical network into external network `net` by its uplink on
    `chassis` (None: the chassis that answers for the destination's MAC, else the
    first with the uplink): `in_port` (and the network's VLAN) filled in, the
    destination's MAC as `dl_dst`, and as `dl_src` the sender's MAC if it is a
    learned neighbour, else the upstream router's if that is."""
    if not net.external:
        raise ModelError("invalid", ("from_outside",), f"network {net.name!r} is not external")
    text = packet.strip()
    fields = _fields(text)
    mac, home = _outside_owner(state, net, _value(text, ("nw_dst", "ipv6_dst")))
    physnet = net.physnet or ""
    if chassis is None:
        have = sorted((c for c in state.all("chassis") if physnet in c.physnets),
                      key=lambda c: (c.id != home, c.name))  # fmt: skip
        if not have:
            raise ModelError(
                "invalid", ("from_outside",), f"no chassis has an uplink for physnet {physnet!r}"
            )
        chassis = have[0]
    uplink = chassis.physnets.get(physnet)
    if uplink is None:
        raise ModelError(
            "invalid",
            ("chassis",),
            f"chassis {chassis.name!r} has no uplink for physnet {physnet!r} "
            f"(network {net.name!r})",
        )
    ofports = ofports_of(chassis)
    defaults = {"in_port": str(ofports[uplink])}
    if net.vlan is not None:
        defaults["dl_vlan"] = str(net.vlan)
    if mac and "dl_dst" not in fields and "eth_dst" not in fields:
        defaults["dl_dst"] = mac
    # the sender's MAC if the router learned it, else the upstream router's (its subnet's
    # gateway) that a sender beyond the subnet is behind
    src = _value(text, ("nw_src", "ipv6_src"))
    ups = [s.gateway for s in state.subnets_of(net.id) if s.gateway]
    known = {n.ip: n for n in state.all("neighbour") if n.network == net.id}
    heard = next((known[a] for a in [src, *ups] if a in known), None)
    if heard is not None and "dl_src" not in fields and "eth_src" not in fields:
        defaults["dl_src"] = heard.mac
    key = _parse(text, defaults)
    seg = f"VLAN {net.vlan}" if net.vlan is not None else "untagged"
    entered = (
        f"from the physical network: network {net.name} by uplink {uplink} "
        f"(physnet {physnet}, {seg}, in_port {ofports[uplink]})"
    )
    return Start(chassis, key, entered, {"outside": net.name, "uplink": uplink})


@dataclass
class Step:
    """One table the packet visited."""

    chassis: str
    datapath: str  # "switch web", "router r1", "" (the chassis' own stage, before any)
    stage: str
    node: TraceNode

    def as_dict(self) -> dict[str, Any]:
        d = self.node.data
        return {
            "stage": self.stage,
            "table": d["table"],
            "matched": d["matched"],
            "priority": d.get("priority"),
            "cookie": d.get("cookie"),
            "origin": d.get("origin", ""),
        }

    def text(self) -> str:
        d = self.node.data
        if not d["matched"]:
            return "no match"
        parts = str(d.get("origin") or "").split(" · ")
        if len(parts) < 3:
            return " · ".join(parts) or f"priority {d['priority']}, cookie {d['cookie']}"
        obj, rule = parts[0], " · ".join(parts[2:])
        if obj.startswith("stage "):
            return rule
        return f"{_ID.sub('', obj)}: {rule}"


def _tuple(key: Sequence[int]) -> tuple[str, str, str]:
    """(protocol, source, destination) of a packet, with ports where it has them."""
    proto = key[fk.IP_PROTO]
    if key[fk.ETH_TYPE] == 0x86DD:
        fsrc, fdst, v6 = BY_INDEX[fk.IPV6_SRC], BY_INDEX[fk.IPV6_DST], True
        src, dst = fsrc.format_value(key[fk.IPV6_SRC]), fdst.format_value(key[fk.IPV6_DST])
    else:
        fsrc, fdst, v6 = BY_INDEX[fk.IPV4_SRC], BY_INDEX[fk.IPV4_DST], False
        src, dst = fsrc.format_value(key[fk.IPV4_SRC]), fdst.format_value(key[fk.IPV4_DST])
    name = _PORTS.get(proto) or {1: "icmp", 58: "icmp6"}.get(proto, f"ip_proto={proto}")
    if proto in _PORTS:
        if v6:
            src, dst = f"[{src}]", f"[{dst}]"
        src, dst = f"{src}:{key[fk.TP_SRC]}", f"{dst}:{key[fk.TP_DST]}"
    return name, src, dst


@dataclass
class Translation:
    """A connection tracker's NAT the packet went through."""

    chassis: str
    datapath: str
    stage: str
    by: str  # the ct action
    before: tuple[int, ...]
    after: tuple[int, ...]

    @property
    def kind(self) -> str:
        b, a = _tuple(self.before), _tuple(self.after)
        return "+".join(k for k, i in (("snat", 1), ("dnat", 2)) if b[i] != a[i]) or "none"

    def text(self) -> str:
        proto, s0, d0 = _tuple(self.before)
        _, s1, d1 = _tuple(self.after)
        where = f"{self.kind} by {self.datapath} on {self.chassis}, {self.stage}"
        return f"nat: {s0} -> {d0} becomes {s1} -> {d1} ({proto}; {where})"

    def as_dict(self) -> dict[str, Any]:
        proto, s0, d0 = _tuple(self.before)
        _, s1, d1 = _tuple(self.after)
        return {
            "chassis": self.chassis,
            "datapath": self.datapath,
            "stage": self.stage,
            "kind": self.kind,
            "protocol": proto,
            "by": self.by,
            "before": {"src": s0, "dst": d0},
            "after": {"src": s1, "dst": d1},
            "text": self.text(),
        }


@dataclass
class Exit:
    """Where a copy of the packet left a chassis' switch (or that it left nowhere)."""

    chassis: str
    kind: str  # port | tunnel | uplink | controller | drop | other
    text: str
    key: tuple[int, ...] = ()
    to_chassis: str | None = None  # a tunnel's far end

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"chassis": self.chassis, "kind": self.kind, "text": self.text}
        if self.to_chassis is not None:
            d["to_chassis"] = self.to_chassis
        if self.key:
            d["flow"] = format_key(self.key)
        return d


@dataclass
class Hop:
    """One chassis' pass: how the packet entered, what it crossed, where it left."""

    chassis: str
    entered: str
    tracer: Tracer
    events: list[Step | Translation] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)

    def crossings(self) -> list[tuple[str, list[Step | Translation]]]:
        """The events grouped by datapath, in order (a translation stays in its own)."""
        out: list[tuple[str, list[Step | Translation]]] = []
        for ev in self.events:
            if out and out[-1][0] == ev.datapath:
                out[-1][1].append(ev)
            else:
                out.append((ev.datapath, [ev]))
        return out


class PathTrace:
    """The packet's path through every chassis it reached."""

    def __init__(self, start: Start) -> None:
        self.start = start
        self.hops: list[Hop] = []
        self.note = ""

    @property
    def translations(self) -> list[Translation]:
        return [e for h in self.hops for e in h.events if isinstance(e, Translation)]

    @property
    def ends(self) -> list[Exit]:
        """Every exit that did not go on to another chassis' pass."""
        return [x for h in self.hops for x in h.exits if x.kind != "tunnel" or not x.to_chassis]

    def path(self) -> list[dict[str, Any]]:
        out = []
        for h in self.hops:
            for dp, evs in h.crossings():
                steps = [e for e in evs if isinstance(e, Step)]
                kind = dp.split(" ", 1)[0] if dp else "chassis"
                out.append({
                    "chassis": h.chassis,
                    "datapath": dp,
                    "kind": kind,
                    "stages": [s.stage for s in steps],
                    "steps": [s.as_dict() for s in steps],
                    "nat": [e.as_dict() for e in evs if isinstance(e, Translation)],
                })  # fmt: skip
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": format_key(self.start.key),
            "from": {"chassis": self.start.chassis.name, **self.start.origin},
            "path": self.path(),
            "nat": [t.as_dict() for t in self.translations],
            "hops": [
                {
                    "chassis": h.chassis,
                    "entered": h.entered,
                    "exits": [x.as_dict() for x in h.exits],
                    "trace": h.tracer.as_dict(),
                }
                for h in self.hops
            ],
            "ends": [x.as_dict() for x in self.ends],
            "note": self.note or None,
        }

    def format(self) -> str:
        lines = [f"Flow: {format_key(self.start.key)}", ""]
        for h in self.hops:
            lines.append(f"{h.chassis}: {h.entered}")
            for dp, evs in h.crossings():
                lines.append(f"  {dp or 'chassis ' + h.chassis}")
                width = max((len(e.stage) for e in evs if isinstance(e, Step)), default=0)
                for e in evs:
                    if isinstance(e, Step):
                        lines.append(f"    {e.stage:<{width}}  {e.text()}")
                    else:
                        lines.append(f"    {e.text()}")
            for x in h.exits:
                lines.append(f"  => {x.text}")
        if self.note:
            lines.append(self.note)
        for h in self.hops:
            head = f"{h.chassis}: {h.entered}"
            lines += ["", "=" * len(head), head, "=" * len(head), h.tracer.format()]
        return "\n".join(lines)


# -- walking one pass ---------------------------------------------------------------------
class _Names:
    """Datapath keys, OpenFlow ports and underlay addresses of the model, as names."""

    def __init__(self, state: State) -> None:
        from ..compiler.logical import datapath_key
        from ..compiler.router import router_key

        self.state = state
        self.datapaths: dict[int, str] = {}
        for n in state.all("network"):
            assert isinstance(n, Network)
            self.datapaths.setdefault(datapath_key(n), f"switch {n.name}")
        for r in state.all("router"):
            assert isinstance(r, Router)
            if r.tunnel_key is not None:
                self.datapaths.setdefault(router_key(r), f"router {r.name}")
        self.by_underlay: dict[int, Chassis] = {}
        for c in state.all("chassis"):
            if c.underlay and ipaddress.ip_address(c.underlay).version == 4:
                self.by_underlay[int(ipaddress.IPv4Address(c.underlay))] = c

    def name(self, key: int) -> str | None:
        return self.datapaths.get(key, f"datapath {key:#x}") if key else None

    def datapath(self, node: TraceNode) -> str | None:
        """The datapath a flow is scoped to: the key its match holds in `metadata`."""
        m = _META.search(str(node.data.get("match") or ""))
        return self.name(int(m.group(1), 0)) if m else None


def _steps(tracer: Tracer) -> list[tuple[TraceNode | None, int]]:
    """The table nodes of one pass, in the order the switch visited them, and between
    them (node None) each value an action wrote to `metadata` -- a patch into another
    datapath (a `write_metadata` instruction is not traced: the next datapath-scoped
    flow's match tells)."""
    out: list[tuple[TraceNode | None, int]] = []

    def walk(n: TraceNode) -> None:
        if n.kind == "table":
            out.append((n, 0))
        elif n.kind == "action" and not n.children:
            for ch in n.data.get("changes", ()):
                if ch["field"] == "metadata":
                    out.append((None, int(ch["after"], 0)))
            return
        for c in n.children:
            walk(c)

    walk(tracer.root)
    return out


def _outputs(
    ops: Sequence[Any], key: list[int], out: list[tuple[tuple[Any, ...], list[int]]]
) -> None:
    """Each output-like operation with the packet's key as it stands there."""
    for op in ops:
        kind = op[0]
        if kind == "set":
            key[op[1]] = op[2]
        elif kind == "push_vlan":
            key[fk.VLAN_VID] = 0x1000 | op[2] & 0xFFF
        elif kind == "pop_vlan":
            key[fk.VLAN_VID] = 0
        elif kind == "clone":
            _outputs(op[1], list(key), out)
        elif kind in ("output", "controller", "normal"):
            out.append((op, list(key)))


class _Walker:
    def __init__(
        self,
        names: _Names,
        switch_of: Callable[[Chassis], tuple[Switch, Mapping[str, int]]],
    ) -> None:
        self.names = names
        self.switch_of = switch_of

    def hop(self, ch: Chassis, key: tuple[int, ...], entered: str) -> Hop:
        sw, ofports = self.switch_of(ch)
        tracer = sw.trace(key)
        hop = Hop(ch.name, entered, tracer)
        dp: list[str | None] = [None]
        outs: list[tuple[tuple[Any, ...], list[int]]] = []
        self._pass(hop, tracer, dp, outs)
        # the chassis' stages before the first datapath belong to the one they enter
        first = next((e.datapath for e in hop.events if e.datapath), "")
        for e in hop.events:
            if e.datapath:
                break
            e.datapath = first
        by_no = {no: name for name, no in ofports.items()}
        for op, k in outs:
            hop.exits.append(self._exit(ch, op, k, by_no, hop))
        if not outs:
            reason = next(
                (t.drop_reason for t in reversed(self._tracers(tracer)) if t.drop_reason), None
            )
            last = next((e for e in reversed(hop.events) if isinstance(e, Step)), None)
            at = f" at {last.datapath} {last.stage}: {last.text()}" if last is not None else ""
            hop.exits.append(Exit(ch.name, "drop", f"dropped ({reason or 'no output'}){at}"))
        return hop

    def _tracers(self, t: Tracer) -> list[Tracer]:
        out = [t]
        for _, sub in t.recirculations:
            out += self._tracers(sub)
        return out

    def _pass(
        self,
        hop: Hop,
        tracer: Tracer,
        dp: list[str | None],
        outs: list[tuple[tuple[Any, ...], list[int]]],
    ) -> None:
        steps = []
        for node, meta in _steps(tracer):
            if node is None:
                dp[0] = self.names.name(meta)
                continue
            here = self.names.datapath(node)
            if here is not None:
                dp[0] = here
            step = Step(hop.chassis, dp[0] or "", stage_of(node.data["table"]), node)
            steps.append(step)
            hop.events.append(step)
        _outputs(tracer.odp, list(tracer.initial), outs)
        cts = [op for op in tracer.odp if op[0] == "ct" and op[1].table is not None]
        for op, (_, sub) in zip(cts, tracer.recirculations, strict=False):
            ct: Ct = op[1]
            before, after = tuple(op[2]), tuple(sub.initial)
            if ct.nat is not None and _tuple(before) != _tuple(after):
                at = next((s for s in reversed(steps)
                           if "ct(" in str(s.node.data.get("actions", ""))), None)  # fmt: skip
                stage = at.stage if at is not None else stage_of(ct.table or 0)
                hop.events.append(
                    Translation(hop.chassis, dp[0] or "", stage, ct.format(), before, after)
                )
            self._pass(hop, sub, dp, outs)

    def _exit(
        self,
        ch: Chassis,
        op: tuple[Any, ...],
        key: list[int],
        by_no: Mapping[int, str],
        hop: Hop,
    ) -> Exit:
        k = tuple(key)
        if op[0] == "controller":
            cookie = f"{op[4]:#x}"
            step = next((e for e in hop.events
                         if isinstance(e, Step) and e.node.data.get("cookie") == cookie), None)  # fmt: skip
            why = step.text() if step is not None else f"cookie {cookie}"
            return Exit(ch.name, "controller", f"to the controller ({why})", k)
        if op[0] != "output":
            return Exit(ch.name, "other", ",".join(format_ops([op])), k)
        iface = by_no.get(op[1])
        state = self.names.state
        port = next((p for p in state.all("port") if p.chassis == ch.id and p.iface == iface), None)
        if port is not None:
            return Exit(ch.name, "port", f"delivered to port {port.name} (output:{op[1]})", k)
        if iface in [tunnel_iface(e) for e in ENCAPS]:
            to = self.names.by_underlay.get(key[fk.TUN_DST])
            dst = BY_INDEX[fk.TUN_DST].format_value(key[fk.TUN_DST])
            if to is None:
                return Exit(ch.name, "tunnel", f"{iface} to {dst}: no chassis has it", k)
            meta = f", tun_metadata0={key[fk.TUN_METADATA0]:#x}" if to.encap == "geneve" else ""
            text = f"{to.encap} tunnel to {to.name} ({dst}), tun_id={key[fk.TUN_ID]:#x}{meta}"
            return Exit(ch.name, "tunnel", text, k, to.name)
        for physnet, up in sorted(ch.physnets.items()):
            if up == iface:
                vid = key[fk.VLAN_VID] & 0xFFF if key[fk.VLAN_VID] & 0x1000 else None
                seg = f"VLAN {vid}" if vid is not None else "untagged"
                text = f"to the physical network: uplink {iface}, physnet {physnet} ({seg})"
                return Exit(ch.name, "uplink", text, k)
        return Exit(ch.name, "other", f"output:{op[1]} ({iface or 'no such port'})", k)


def received(
    src: Chassis, dst: Chassis, key: Sequence[int], ofports: Mapping[str, int]
) -> tuple[int, ...] | None:
    """The key `dst`'s tunnel port gives a frame `src` sent it with `key` (None: `dst`
    has no tunnel port of its encapsulation)."""
    no = ofports.get(tunnel_iface(dst.encap))
    if no is None:
        return None
    k = list(key)
    k[fk.META_SLOTS] = [0] * (fk.KEY_LEN - fk.METADATA)
    tun = list(key[fk.TUN_SLOTS])
    tun[fk.TUN_SRC - fk.TUN_ID] = int(ipaddress.IPv4Address(src.underlay or "0.0.0.0"))
    if dst.encap != "geneve":
        tun[fk.TUN_METADATA0 - fk.TUN_ID :] = _NO_TUN[fk.TUN_METADATA0 - fk.TUN_ID :]
    k[fk.TUN_SLOTS] = tun
    k[fk.IN_PORT] = no
    return tuple(k)


def trace_path(
    state: State,
    start: Start,
    switch_of: Callable[[Chassis], tuple[Switch, Mapping[str, int]]],
) -> PathTrace:
    """Trace from `start` through every chassis the packet reaches by a tunnel."""
    names = _Names(state)
    w = _Walker(names, switch_of)
    out = PathTrace(start)
    todo: list[tuple[Chassis, tuple[int, ...], str]] = [(start.chassis, start.key, start.entered)]
    while todo:
        if len(out.hops) >= MAX_HOPS:
            out.note = f"(stopped after {MAX_HOPS} chassis passes)"
            break
        ch, key, entered = todo.pop(0)
        hop = w.hop(ch, key, entered)
        out.hops.append(hop)
        for x in hop.exits:
            if x.kind != "tunnel" or x.to_chassis is None:
                continue
            to = next(c for c in names.by_underlay.values() if c.name == x.to_chassis)
            k = received(ch, to, x.key, switch_of(to)[1])
            if k is None:
                x.to_chassis = None
                x.text += f" (no {tunnel_iface(to.encap)} there)"
                continue
            src = BY_INDEX[fk.TUN_SRC].format_value(k[fk.TUN_SRC])
            todo.append((to, k, f"by the {to.encap} tunnel from {ch.name} ({src})"))
    return out
