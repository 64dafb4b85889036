"""The lab without root: the same topology file, simulated in this process.

The controller (in-memory store) programs real vnet `Switch` objects through
the in-process southbound; their ports are memory devices, and each port's
workload is a small host that answers ARP, IPv6 neighbour solicitations and
ICMP echo (v4 and v6), and can ping -- on its subnets directly, elsewhere
through its default route (`addressing`: a routed subnet's gateway, whose
MAC it resolves as a real host does), and a port by name.  The
frames are real frames and the switch runs them through the same pipeline
as on real interfaces -- only the wires are lists.  Enough for ping and
trace; not for iperf3.

Chassis with an underlay address get the tunnel ports the controller's
flows use (`vtep-<encap>`, one per encapsulation in the topology), whose
sockets are lists too: `pump` hands each outer packet to the chassis whose
underlay address it is sent to, as its socket would read it, and counts
what each chassis received (`underlay_rx`), so a test can tell which
chassis a broadcast reached.

`vnet lab up --sim` runs it as a process of its own (`serve`): the
controller's REST API as with a real lab (so `vnet get`, `trace`, `drift`
and `apply` work), and a control socket where `vnet lab exec PORT -- ping`
lands.  Model changes made through the API are caught up with before each
ping: new ports get a host, deleted ones are unplugged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from ..api import serve as serve_api
from ..controller.service import Controller, LocalSouthbound
from ..datapath.control import JsonLineServer
from ..datapath.port import PortConfig
from ..datapath.ports.memory import MemoryDevice, MemoryTunnel
from ..datapath.switch import Switch
from ..model.objects import Port, tunnel_iface
from ..packet import arp, ethernet, icmp, icmpv6, ipv4, ipv6
from ..packet.addr import ip4_int, ip6_int, mac_int
from ..store import SqliteStore
from .addressing import Address, addresses, default_routes, routed_subnets
from .topology import model_part, with_underlay
from .underlay import carry

__all__ = ["SimControl", "SimHost", "SimLab", "serve"]

BROADCAST = (1 << 48) - 1
ALL_NODES = 0xFF02 << 112 | 1
IPPROTO_ICMPV6 = 58


def _solicited_node(addr: int) -> int:
    """ff02::1:ffXX:XXXX, the multicast group a neighbour solicitation for `addr` goes to."""
    return (0xFF02 << 112) | (1 << 32) | (0xFF << 24) | (addr & 0xFFFFFF)


def _multicast_mac(group: int) -> int:
    return (0x3333 << 32) | (group & 0xFFFFFFFF)


@dataclass
class SimHost:
    """A workload: one interface, IPv4 and IPv6 addresses, a neighbour cache, echo replies."""

    port: Port
    switch: Switch
    device: MemoryDevice
    neighbours: dict[int, int] = field(default_factory=dict)  # ip (v4 or v6) -> mac
    replies: set[tuple[int, int]] = field(default_factory=set)  # (ident, seq)
    addrs: list[Address] = field(default_factory=list)  # with gateways where routed

    def next_hop(self, dst: int, v6: bool) -> int | None:
        """The address to send to for `dst`: itself on one of the host's subnets, else
        the default route's gateway of its family; None without a route."""
        version = 6 if v6 else 4
        ip = ipaddress.ip_address(dst) if v6 else ipaddress.IPv4Address(dst)
        if any(a.version == version and ip in a.interface.network for a in self.addrs):
            return dst
        gw = default_routes(self.addrs).get(version)
        return None if gw is None else int(ipaddress.ip_address(gw))

    @property
    def mac(self) -> int:
        return mac_int(self.port.mac or "00:00:00:00:00:00")

    @property
    def ip(self) -> int:
        return ip4_int(next(a for a in self.port.ips if ":" not in a))

    @property
    def ip4s(self) -> set[int]:
        return {ip4_int(a) for a in self.port.ips if ":" not in a}

    @property
    def ip6s(self) -> set[int]:
        return {ip6_int(a) for a in self.port.ips if ":" in a}

    def accepts(self, dst: int) -> bool:
        if dst in (self.mac, BROADCAST):
            return True
        groups = {_solicited_node(a) for a in self.ip6s} | {ALL_NODES}
        return dst in {_multicast_mac(g) for g in groups}

    def send(self, frame: bytes) -> None:
        p = self.switch.port_by_name(self.port.iface)
        if p is not None:  # unplugged: the frame goes nowhere
            self.switch.receive_batch(p, [(b"", frame)], 0.0)

    def receive(self, frame: bytes) -> None:
        eth, off = ethernet.parse(frame)
        if not self.accepts(eth.dst):
            return
        if eth.ethertype == ethernet.ETH_TYPE_ARP:
            a, _ = arp.parse(frame, off)
            self.neighbours[a.spa] = a.sha
            if a.op == 1 and a.tpa in self.ip4s:
                reply = arp.build(2, self.mac, a.tpa, a.sha, a.spa)
                self.send(ethernet.build(a.sha, self.mac, ethernet.ETH_TYPE_ARP, reply))
        elif eth.ethertype == ethernet.ETH_TYPE_IPV4:
            ip, ioff = ipv4.parse(frame, off)
            if ip.dst not in self.ip4s or ip.proto != 1:
                return
            m, poff = icmp.parse(frame, ioff)
            if m.type == icmp.TYPE_ECHO_REQUEST:
                body = icmp.build_echo(m.echo_id, m.echo_seq, bytes(frame[poff:]), reply=True)
                pkt = ipv4.build(ip.dst, ip.src, 1, body)
                self.send(ethernet.build(eth.src, self.mac, ethernet.ETH_TYPE_IPV4, pkt))
            elif m.type == icmp.TYPE_ECHO_REPLY:
                self.replies.add((m.echo_id, m.echo_seq))
        elif eth.ethertype == ethernet.ETH_TYPE_IPV6:
            self._receive6(frame, eth.src, off)

    def _receive6(self, frame: bytes, src_mac: int, off: int) -> None:
        ip, ioff = ipv6.parse(frame, off)
        if ip.next_header != IPPROTO_ICMPV6:
            return
        end = ioff + ip.payload_length
        m, poff = icmpv6.parse(frame, ioff)
        if m.type == icmpv6.ND_NS:
            nd = icmpv6.parse_nd(frame, poff, m.type, end)
            if nd.target in self.ip6s and ip.src != 0:  # not DAD
                self.neighbours[ip.src] = nd.sll or src_mac
                na = icmpv6.build_na(nd.target, ip.src, nd.target, self.mac)
                pkt = ipv6.build(nd.target, ip.src, IPPROTO_ICMPV6, na, hop_limit=255)
                self.send(ethernet.build(src_mac, self.mac, ethernet.ETH_TYPE_IPV6, pkt))
        elif m.type == icmpv6.ND_NA:
            nd = icmpv6.parse_nd(frame, poff, m.type, end)
            self.neighbours[nd.target] = nd.tll or src_mac
        elif m.type in (icmpv6.TYPE_ECHO_REQUEST, icmpv6.TYPE_ECHO_REPLY):
            if ip.dst not in self.ip6s:
                return
            ident, seq = struct.unpack_from("!HH", frame, poff)
            if m.type == icmpv6.TYPE_ECHO_REPLY:
                self.replies.add((ident, seq))
                return
            body = struct.pack("!HH", ident, seq) + bytes(frame[poff + 4 : end])
            reply = icmpv6.build(ip.dst, ip.src, icmpv6.TYPE_ECHO_REPLY, 0, body)
            pkt = ipv6.build(ip.dst, ip.src, IPPROTO_ICMPV6, reply)
            self.send(ethernet.build(src_mac, self.mac, ethernet.ETH_TYPE_IPV6, pkt))

    # -- sending ---------------------------------------------------------------------------
    def solicit(self, dst: int, v6: bool) -> None:
        """Ask who has `dst`: ARP for IPv4, a neighbour solicitation for IPv6."""
        if not v6:
            req = arp.build(1, self.mac, self.ip, 0, dst)
            self.send(ethernet.build(BROADCAST, self.mac, ethernet.ETH_TYPE_ARP, req))
            return
        src, group = self.source6(), _solicited_node(dst)
        ns = icmpv6.build_ns(src, group, dst, self.mac)
        pkt = ipv6.build(src, group, IPPROTO_ICMPV6, ns, hop_limit=255)
        self.send(ethernet.build(_multicast_mac(group), self.mac, ethernet.ETH_TYPE_IPV6, pkt))

    def source6(self) -> int:
        if not self.ip6s:
            raise ValueError(f"port {self.port.name} has no IPv6 address")
        return min(self.ip6s)

    def echo(self, dst: int, v6: bool, ident: int, seq: int, mac: int) -> None:
        if not v6:
            body = icmp.build_echo(ident, seq, b"vnet-sim")
            pkt = ipv4.build(self.ip, dst, 1, body)
            self.send(ethernet.build(mac, self.mac, ethernet.ETH_TYPE_IPV4, pkt))
            return
        src = self.source6()
        body = struct.pack("!HH", ident, seq) + b"vnet-sim"
        req = icmpv6.build(src, dst, icmpv6.TYPE_ECHO_REQUEST, 0, body)
        pkt6 = ipv6.build(src, dst, IPPROTO_ICMPV6, req)
        self.send(ethernet.build(mac, self.mac, ethernet.ETH_TYPE_IPV6, pkt6))


class SimLab:
    def __init__(self, doc: dict[str, Any], attach: bool = True) -> None:
        self.ctl = Controller(SqliteStore())
        self.ctl.nb.apply(with_underlay(model_part(doc))[0])
        self.switches: dict[str, Switch] = {}
        self.hosts: dict[str, SimHost] = {}
        self.underlay: dict[int, Switch] = {}  # underlay address -> its chassis' switch
        self.underlay_rx: dict[str, int] = {}  # chassis name -> outer packets received
        self._ident = 0x5EED
        self._plug()
        if attach:
            asyncio.run(self.attach())

    def _plug(self) -> list[Switch]:
        """Switches for new chassis, hosts for new ports, unplug deleted ones; the new switches."""
        state = self.ctl.nb.state()
        new = []
        for ch in state.all("chassis"):
            if ch.name not in self.switches:
                self.switches[ch.name] = Switch(ch.name, fail_mode="secure")
                new.append(self.switches[ch.name])
        kinds = sorted({c.encap for c in state.all("chassis") if c.underlay})
        self.underlay = {}
        for ch in state.all("chassis"):
            if ch.underlay is None or ":" in ch.underlay:
                continue
            sw = self.switches[ch.name]
            self.underlay[ip4_int(ch.underlay)] = sw
            for kind in kinds:
                name = tunnel_iface(kind)
                if sw.port_by_name(name) is None:
                    cfg = PortConfig(name, kind=kind, local_ip=ip4_int(ch.underlay), port_security=False)  # fmt: skip
                    sw.add_port(cfg, MemoryTunnel(name, ch.underlay_mtu))
        names = {c.id: c.name for c in state.all("chassis")}
        bound = {p.name: p for p in state.all("port") if p.chassis in names}
        for name in [n for n in self.hosts if n not in bound]:
            self._unplug(self.hosts.pop(name))
        subnets = {s.id: s.model_dump() for s in state.all("subnet")}
        routed = routed_subnets(r.model_dump() for r in state.all("router"))
        for p in bound.values():
            old = self.hosts.get(p.name)
            if old is not None and old.port == p:
                old.addrs = addresses(p.model_dump(), subnets, routed)  # a router may have come
                continue
            if old is not None:
                self._unplug(old)
            sw = self.switches[names[p.chassis]]
            dev = MemoryDevice(p.iface, hw_addr=mac_int(p.mac))
            sw.add_port(PortConfig(p.iface, kind="memory", port_security=False), dev)
            self.hosts[p.name] = SimHost(
                p, sw, dev, addrs=addresses(p.model_dump(), subnets, routed)
            )
        return new

    @staticmethod
    def _unplug(h: SimHost) -> None:
        if h.switch.port_by_name(h.port.iface) is not None:
            h.switch.del_port(h.port.iface)

    async def attach(self) -> None:
        for sw in self.switches.values():
            await self.ctl.attach(LocalSouthbound(sw))

    async def refresh(self) -> None:
        """Catch up with model changes made since (through the API): plug, attach, sync."""
        new = self._plug()
        for sw in new:
            await self.ctl.attach(LocalSouthbound(sw))
        for sess in list(self.ctl.sessions.values()):
            sess.full = True  # ports may have come or gone
            await self.ctl.sync(sess)

    def pump(self, rounds: int = 20) -> None:
        """Deliver what the switches sent until nothing moves."""
        for _ in range(rounds):
            moved = self._carry()
            for h in self.hosts.values():
                for frame in h.device.frames():
                    moved = True
                    h.receive(frame)
            if not moved:
                return

    def _carry(self) -> bool:
        """The underlay: each outer packet to the tunnel port of the chassis it is sent to."""
        return carry(self.switches.values(), self.underlay, 0.0, self.underlay_rx)

    def resolve(self, name: str) -> str:
        """An address, or a port's name as its first address (IPv4 before IPv6), as a
        real workload's hosts file names it."""
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            pass
        h = self.hosts.get(name)
        if h is None:
            raise ValueError(f"{name!r}: not an IPv4 or IPv6 address, nor a port of the lab")
        ips = sorted(h.port.ips, key=lambda a: ":" in a)
        if not ips:
            raise ValueError(f"port {name} has no address")
        return ips[0]

    def ping(self, port: str, addr: str, count: int = 3) -> int:
        """Echo requests from `port`'s workload to `addr` (IPv4 or IPv6, or a port's
        name); the number answered.  Off the workload's subnets a request goes to its
        gateway's MAC (resolved as the next hop); without a route, none is sent."""
        h = self.hosts[port]
        ip = ipaddress.ip_address(self.resolve(addr))
        v6, dst = ip.version == 6, int(ip)
        if not v6 and not h.ip4s:
            raise ValueError(f"port {port} has no IPv4 address")
        if v6:
            h.source6()  # refuses a port without IPv6
        got = 0
        ident = self._ident = (self._ident + 1) & 0xFFFF
        hop = h.next_hop(dst, v6)
        for seq in range(1, count + 1):
            if hop is None:
                continue  # network unreachable
            if hop not in h.neighbours:
                h.solicit(hop, v6)
                self.pump()
            if hop not in h.neighbours:
                continue
            h.echo(dst, v6, ident, seq, h.neighbours[hop])
            self.pump()
            got += (ident, seq) in h.replies
        return got


class SimControl(JsonLineServer):
    """The sim lab's control socket: `vnet lab exec PORT -- ping ...` lands here."""

    errors = (ValueError, LookupError)

    def __init__(self, lab: SimLab, path: str) -> None:
        self.lab = lab
        super().__init__(path, {"ping": self.ping, "ports": self.ports})

    async def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        await self.lab.refresh()
        port, addr = str(args["port"]), str(args["addr"])
        if port not in self.lab.hosts:
            names = ", ".join(sorted(self.lab.hosts))
            raise LookupError(f"no port {port!r} in the lab (ports: {names})")
        count = int(args.get("count", 3))
        if not 1 <= count <= 10_000:
            raise ValueError(f"count {count}: expected 1 to 10000")
        return {"sent": count, "received": self.lab.ping(port, addr, count)}

    async def ports(self, args: dict[str, Any]) -> list[str]:
        await self.lab.refresh()
        return sorted(self.lab.hosts)


async def serve(doc: dict[str, Any], control: str, host: str, port: int) -> None:
    """The simulated lab as a process: its controller's API on HOST:PORT, pings on `control`."""
    lab = SimLab(doc, attach=False)
    await lab.attach()
    await lab.ctl.start()
    server = SimControl(lab, control)
    await server.start()
    try:
        await serve_api(lab.ctl, host, port)
    finally:
        server.close()
        await lab.ctl.stop()
