"""Proof of policy: the compiled flows' verdicts against the verdicts the model intends.

`verify(state)` builds, in this process, one vnet `Switch` per chassis with
a memory device for every bound port and memory tunnels between the chassis
(as the simulated lab does), installs on each exactly what the controller
would (`Compiler.compile` then `localize`, the firewall's log meter), and
for every pair of port classes and every service class of `policy.matrix`
sends a synthetic first packet from one port of the one class to one of the
other through the real pipeline -- conntrack, recirculation, tunnels and
all -- and compares what happens with `Evaluator.intended`:

- allowed: the packet reaches the receiver, and its reply (TCP SYN/ACK, the
  UDP answer, the echo reply) comes back to the sender (another protocol's
  reply is not tried: vnet's tracker does not follow it, so the firewall
  judges its packets one by one);
- denied: it reaches no port; rejected: it reaches no port and the flow
  that dropped it sent it to the controller as a reject (`acl.punts`).

A pair of ports of different tenants is tried too (one per pair of tenants)
and must reach nothing.  Each probe starts from empty connection tables, so
one cell's connection never decides another's.  The work grows with the
classes, not with the ports.  Ports bound to no chassis cannot be tried and
are left out.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..compiler import Compiler, localize
from ..compiler.acl import LOG_METER, Punt, punts
from ..datapath.meters import OFPMF_PKTPS, Band, MeterConfig
from ..datapath.port import PortConfig
from ..datapath.ports.memory import MemoryDevice, MemoryTunnel
from ..datapath.switch import PacketIn, Switch
from ..model.objects import Port, tunnel_iface
from ..model.policy import Cell, Evaluator, Service, address, matrix
from ..model.rules import State
from ..packet import ethernet, icmp, icmpv6, ipv4, ipv6, tcp, udp
from ..packet.addr import ip4_int, mac_int
from ..pipeline.flow import Flow, FlowMod, FlowModCommand
from .underlay import carry

__all__ = ["Disagreement", "Outcome", "Report", "Rig", "check", "verify"]

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
# ICMP queries that start a connection; any other type (a reply, an error) is no first
# packet -- trackers call it invalid, or related to the connection it answers
_QUERIES = {ICMP: {8, 13, 15, 17}, ICMPV6: {128}}
_ECHO_REPLY = {ICMP: 0, ICMPV6: 129}
_ECHO = {ICMP: 8, ICMPV6: 128}


@dataclass(frozen=True)
class Outcome:
    """What the flows did with a first packet (and its reply)."""

    action: str  # allow | deny | reject
    reached: tuple[str, ...] = ()  # the ports the first packet reached
    reply: bool | None = None  # allowed: whether the reply came back; None if not tried
    punts: tuple[Punt, ...] = ()


@dataclass(frozen=True)
class Disagreement:
    src: str
    dst: str
    service: str
    intended: str
    got: str

    def __str__(self) -> str:
        return (
            f"{self.src} -> {self.dst} {self.service}: intended {self.intended}, flows {self.got}"
        )


@dataclass
class Report:
    cells: list[tuple[Cell, Outcome]] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    untried: list[Cell] = field(default_factory=list)  # no first packet to try (an ICMP reply)


class Rig:
    """Every chassis' switch with the model's flows, its ports on memory devices."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.compiler = Compiler()
        self.punts: dict[int, Punt] = {}
        self.switches: dict[str, Switch] = {}
        self.devices: dict[str, MemoryDevice] = {}  # port id -> device
        self.where: dict[str, Switch] = {}  # port id -> its chassis' switch
        self.underlay: dict[int, Switch] = {}
        self.packet_ins: list[PacketIn] = []
        chassis = list(state.all("chassis"))
        kinds = sorted({c.encap for c in chassis if c.underlay})
        for ch in chassis:
            sw = Switch(ch.name, fail_mode="secure")
            sw.on_packet_in = self.packet_ins.append
            sw.controller_connected(1)
            cfg = MeterConfig(LOG_METER.meter_id, OFPMF_PKTPS, (Band(LOG_METER.rate, LOG_METER.burst),))  # fmt: skip
            sw.meter_mod(cfg, "add")
            self.switches[ch.id] = sw
            if ch.underlay and ":" not in ch.underlay:
                self.underlay[ip4_int(ch.underlay)] = sw
                for kind in kinds:
                    name = tunnel_iface(kind)
                    pc = PortConfig(name, kind=kind, local_ip=ip4_int(ch.underlay), port_security=False)  # fmt: skip
                    sw.add_port(pc, MemoryTunnel(name, ch.underlay_mtu))
        for p in state.all("port"):
            host = self.switches.get(p.chassis or "")
            if host is None:
                continue
            dev = MemoryDevice(p.iface, hw_addr=mac_int(p.mac) if p.mac else 0)
            host.add_port(PortConfig(p.iface, kind="memory", port_security=False), dev)
            self.devices[p.id], self.where[p.id] = dev, host
        self.install(state)

    def install(self, state: State) -> None:
        """The flows of `state` on every switch, in one change each; connections stay.

        Ports are those of the rig's first state: a change to labels, groups and
        policies is what this is for."""
        self.state = state
        lflows = self.compiler.compile(state)
        self.punts = punts(lflows)
        for ch in state.all("chassis"):
            sw = self.switches[ch.id]
            ofports = {p.name: no for no, p in sw.ports.items()}
            flows = localize(lflows, state, ch, ofports)
            mods = [FlowMod(FlowModCommand.DELETE, Flow(table=0xFF))]
            sw.commit(mods + [FlowMod(FlowModCommand.ADD, f) for f in flows])

    def bound(self, port: Port) -> bool:
        return port.id in self.devices

    def reset(self) -> None:
        """Empty connection tables and wires, no packet-ins."""
        for sw in self.switches.values():
            sw.conntrack.flush()
            sw.now += 10.0  # a fresh second for the meters
        self.packet_ins.clear()
        for dev in self.devices.values():
            dev.frames()

    def send(self, port: Port, frame: bytes) -> dict[str, list[bytes]]:
        """`frame` from `port`'s workload; port id -> the frames each port received."""
        sw = self.where[port.id]
        p = sw.port_by_name(port.iface)
        assert p is not None
        sw.receive_batch(p, [(b"", frame)], sw.now)
        for _ in range(8):
            if not self._carry():
                break
        out = {}
        for pid, dev in self.devices.items():
            got = dev.frames()
            if got:
                out[pid] = got
        return out

    def _carry(self) -> bool:
        return carry(self.switches.values(), self.underlay)

    def probe(self, src: Port, dst: Port, svc: Service, sport: int = 40000) -> Outcome:
        """The first packet of a connection for `svc` from `src` to `dst`, and its reply."""
        self.reset()
        first = _packet(src, dst, svc, sport, reply=False)
        if first is None:
            return Outcome("deny")
        got = self.send(src, first)
        names = {p.id: p.name for p in self.state.all("port")}
        ps = tuple(self.punts[pi.cookie] for pi in self.packet_ins if pi.cookie in self.punts)
        reached = tuple(sorted(names[k] for k in got))
        if dst.id not in got:
            action = "reject" if any(p.action == "reject" for p in ps) else "deny"
            return Outcome(action, reached, None, ps)
        back = _packet(dst, src, svc, sport, reply=True)
        reply = None
        if back is not None:
            reply = src.id in self.send(dst, back)
        return Outcome("allow", reached, reply, ps)


def _packet(src: Port, dst: Port, svc: Service, sport: int, reply: bool) -> bytes | None:
    """A packet from `src` to `dst`: the first of a connection for `svc`, or (`reply`) the
    answer to it; None if a port has no address of the family or no MAC, or no answer."""
    a, b = src, dst
    sa, da = address(a, svc.ethertype), address(b, svc.ethertype)
    if sa is None or da is None or a.mac is None or b.mac is None:
        return None
    v6 = svc.ethertype == "IPv6"
    s, d = int(ipaddress.ip_address(sa)), int(ipaddress.ip_address(da))
    p = svc.protocol
    if p == TCP:
        ports = (svc.port or 0, sport) if reply else (sport, svc.port or 0)
        flags = 0x12 if reply else 0x02
        body = tcp.build(*ports, flags=flags, seq=5000 if reply else 1000, ack=1001 if reply else 0, ip_src=s, ip_dst=d, ipv6=v6)  # fmt: skip
    elif p == UDP:
        ports = (svc.port or 0, sport) if reply else (sport, svc.port or 0)
        body = udp.build(*ports, b"probe", ip_src=s, ip_dst=d, ipv6=v6)
    elif svc.icmp_type is not None:
        t, c = svc.icmp_type, svc.icmp_code or 0
        if reply:
            if t != _ECHO[p]:
                return None  # only an echo has an answer to try
            t, c = _ECHO_REPLY[p], 0
        rest = struct.pack("!HH", sport, 1)
        body = icmpv6.build(s, d, t, c, rest) if v6 else icmp.build(t, c, rest)
    elif reply:
        return None  # another protocol: vnet's tracker follows none, so no reply is checked
    else:
        body = b"probe" + bytes(3)
    ip = ipv6.build(s, d, p, body) if v6 else ipv4.build(s, d, p, body)
    return ethernet.build(mac_int(b.mac), mac_int(a.mac), 0x86DD if v6 else 0x0800, ip)


def _pair(rig: Rig, a: Sequence[Port], b: Sequence[Port]) -> tuple[Port, Port] | None:
    for p in a:
        for q in b:
            if p.id != q.id and rig.bound(p) and rig.bound(q):
                return p, q
    return None


def check(state: State, tenant: str | None = None, rig: Rig | None = None) -> Report:
    """Every cell of the matrix tried on the flows; the outcomes and the disagreements."""
    rig = rig or Rig(state)
    ev = Evaluator(state)
    report = Report()
    n = 0
    for cell in matrix(state, tenant):
        pair = _pair(rig, cell.src.ports, cell.dst.ports)
        if pair is None:
            continue
        src, dst = pair
        n += 1
        svc = cell.service.example
        if svc.icmp_type is not None and svc.icmp_type not in _QUERIES[svc.protocol]:
            report.untried.append(cell)
            continue
        want = ev.intended(src, dst, svc)
        got = rig.probe(src, dst, svc, 20000 + n % 40000)
        report.cells.append((cell, got))
        what = _disagree(want.action, got, dst)
        if what:
            report.disagreements.append(
                Disagreement(src.name, dst.name, str(cell.service), str(want), what)
            )
    # never across tenants: one pair of ports per pair of tenants
    firsts: dict[str, Port] = {}
    for p in sorted(state.all("port"), key=lambda p: p.name):
        if rig.bound(p) and (tenant is None or p.tenant == tenant):
            firsts.setdefault(p.tenant, p)
    for t1, p in firsts.items():
        for q in [q for t2, q in firsts.items() if t2 != t1]:
            for fam in ("IPv4", "IPv6"):
                if address(p, fam) is None or address(q, fam) is None:
                    continue
                got = rig.probe(p, q, Service(fam, TCP, port=80))
                if got.reached:
                    report.disagreements.append(
                        Disagreement(
                            p.name,
                            q.name,
                            f"tcp/80 ({fam})",
                            "deny: other tenant",
                            f"reached {', '.join(got.reached)}",
                        )
                    )
    return report


def _disagree(intended: str, got: Outcome, dst: Port) -> str:
    """'' if the outcome is the intended one, else what the flows did instead."""
    stray = [n for n in got.reached if n != dst.name]
    if stray:
        return f"reached {', '.join(stray)}"
    if intended == "allow":
        if got.action != "allow":
            return got.action
        if got.reply is False:
            return "allow, but the reply did not come back"
        return ""
    if got.action == "allow":
        return "allow"
    if intended == "reject" and got.action != "reject":
        return "deny without reject"
    return ""


def verify(state: State, tenant: str | None = None) -> list[Disagreement]:
    """Where the compiled flows disagree with the intended verdicts ([] when they agree)."""
    return check(state, tenant).disagreements
