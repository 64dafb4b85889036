"""The lab without root: the same topology file, simulated in this process.

The controller (in-memory store) programs real vnet `Switch` objects through
the in-process southbound; their ports are memory devices, and each port's
workload is a small host that answers ARP and ICMP echo and can ping.  The
frames are real frames and the switch runs them through the same pipeline
as on real interfaces -- only the wires are lists.  Enough for ping and
trace; not for iperf3.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..controller.service import Controller, LocalSouthbound
from ..datapath.port import PortConfig
from ..datapath.ports.memory import MemoryDevice
from ..datapath.switch import Switch
from ..model.objects import Port
from ..packet import arp, ethernet, icmp, ipv4
from ..packet.addr import ip4_int, mac_int
from ..store import SqliteStore

__all__ = ["SimHost", "SimLab"]

BROADCAST = (1 << 48) - 1


@dataclass
class SimHost:
    """A workload: one interface, IPv4 addresses, an ARP cache, echo replies seen."""

    port: Port
    switch: Switch
    device: MemoryDevice
    neighbours: dict[int, int] = field(default_factory=dict)  # ip -> mac
    replies: set[tuple[int, int]] = field(default_factory=set)  # (ident, seq)

    @property
    def mac(self) -> int:
        return mac_int(self.port.mac or "00:00:00:00:00:00")

    @property
    def ip(self) -> int:
        return ip4_int(next(a for a in self.port.ips if ":" not in a))

    def send(self, frame: bytes) -> None:
        p = self.switch.port_by_name(self.port.iface)
        assert p is not None
        self.switch.receive_batch(p, [(b"", frame)], 0.0)

    def receive(self, frame: bytes) -> None:
        eth, off = ethernet.parse(frame)
        if eth.dst not in (self.mac, BROADCAST):
            return
        if eth.ethertype == ethernet.ETH_TYPE_ARP:
            a, _ = arp.parse(frame, off)
            self.neighbours[a.spa] = a.sha
            if a.op == 1 and a.tpa == self.ip:
                reply = arp.build(2, self.mac, self.ip, a.sha, a.spa)
                self.send(ethernet.build(a.sha, self.mac, ethernet.ETH_TYPE_ARP, reply))
        elif eth.ethertype == ethernet.ETH_TYPE_IPV4:
            ip, ioff = ipv4.parse(frame, off)
            if ip.dst != self.ip or ip.proto != 1:
                return
            m, poff = icmp.parse(frame, ioff)
            ident, seq = m.echo_id, m.echo_seq
            if m.type == 8:
                body = icmp.build_echo(ident, seq, bytes(frame[poff:]), reply=True)
                pkt = ipv4.build(self.ip, ip.src, 1, body)
                self.send(ethernet.build(eth.src, self.mac, ethernet.ETH_TYPE_IPV4, pkt))
            elif m.type == 0:
                self.replies.add((ident, seq))


class SimLab:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.ctl = Controller(SqliteStore())
        self.ctl.nb.apply(doc)
        self.switches: dict[str, Switch] = {}
        self.hosts: dict[str, SimHost] = {}
        self._ident = 0x5EED
        state = self.ctl.nb.state()
        for ch in state.all("chassis"):
            sw = Switch(ch.name, fail_mode="secure")
            self.switches[ch.name] = sw
            for p in state.all("port"):
                if p.chassis == ch.id:
                    dev = MemoryDevice(p.iface, hw_addr=mac_int(p.mac))
                    sw.add_port(PortConfig(p.iface, kind="memory", port_security=False), dev)
                    self.hosts[p.name] = SimHost(p, sw, dev)
        asyncio.run(self._attach())

    async def _attach(self) -> None:
        for sw in self.switches.values():
            await self.ctl.attach(LocalSouthbound(sw))

    def pump(self, rounds: int = 20) -> None:
        """Deliver what the switches sent until nothing moves."""
        for _ in range(rounds):
            moved = False
            for h in self.hosts.values():
                for frame in h.device.frames():
                    moved = True
                    h.receive(frame)
            if not moved:
                return

    def ping(self, port: str, addr: str, count: int = 3) -> int:
        """Echo requests from `port`'s workload to `addr`; the number answered."""
        h = self.hosts[port]
        dst = ip4_int(addr)
        if not ipaddress.ip_address(addr).version == 4:
            raise ValueError("the simulated hosts speak IPv4")
        got = 0
        ident = self._ident = (self._ident + 1) & 0xFFFF
        for seq in range(1, count + 1):
            if dst not in h.neighbours:
                req = arp.build(1, h.mac, h.ip, 0, dst)
                h.send(ethernet.build(BROADCAST, h.mac, ethernet.ETH_TYPE_ARP, req))
                self.pump()
            mac = h.neighbours.get(dst)
            if mac is None:
                continue
            body = icmp.build_echo(ident, seq, b"vnet-sim")
            h.send(
                ethernet.build(mac, h.mac, ethernet.ETH_TYPE_IPV4, ipv4.build(h.ip, dst, 1, body))
            )
            self.pump()
            got += (ident, seq) in h.replies
        return got
