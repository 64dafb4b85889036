from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.checksums import bad_checksums
from vnet.datapath import PortConfig, Switch
from vnet.datapath.port import Port
from vnet.datapath.ports.memory import MemoryDevice
from vnet.packet.addr import mac_int
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow

# the two-port rig's addresses: a (port 1) inside, b (port 2) outside, a translated
A, B, X = "10.0.0.1", "10.0.0.2", "192.0.2.1"

# source NAT of a's connections to X, recirculated: ct(nat) on the way in, the
# commit with nat(src=) in table 1
SNAT_RECIRC = [
    "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1,nat)",
    "table=1,priority=10,in_port=1,ip,ct_state=+new+trk,actions=ct(commit,zone=1,nat(src=192.0.2.1)),output:2",
    "table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2",
    "table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1",
]
# the same in place: no recirculation, the outputs after ct send the translated packet
SNAT_IN_PLACE = [
    "priority=10,in_port=1,ip,actions=ct(commit,zone=1,nat(src=192.0.2.1)),output:2",
    "priority=10,in_port=2,ip,actions=ct(zone=1,nat),output:1",
]


def mac(i: int) -> str:
    return f"02:00:00:00:00:{i:02x}"


def udp(
    src: int, dst: int | str, sport: int = 1000, dport: int = 2000, vlan: int | None = None
) -> bytes:
    d = mac(dst) if isinstance(dst, int) else dst
    eth = Ether(src=mac(src), dst=d)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(
        eth
        / IP(src=f"10.0.0.{src}", dst=f"10.0.0.{dst if isinstance(dst, int) else 255}")
        / UDP(sport=sport, dport=dport)
        / (b"x" * 18)
    )


def eth(out: bool = True) -> Ether:
    """The two-port rig's Ethernet header: a to b (`out`), or b to a."""
    return Ether(src=mac(1), dst=mac(2)) if out else Ether(src=mac(2), dst=mac(1))


def tcp(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int = 0,
        data: bytes = b"", out: bool = True) -> bytes:  # fmt: skip
    """A TCP segment between the two-port rig's ports (a to b when `out`)."""
    return bytes(
        eth(out)
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535)
        / data
    )


def arp(src: int, spa: str, tpa: str, sha: str | None = None) -> bytes:
    return bytes(
        Ether(src=mac(src), dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=sha or mac(src), psrc=spa, pdst=tpa)
    )


class Rig:
    """A switch with in-memory ports; `send(port, frame)` and `got(port)`."""

    def __init__(self, sw: Switch) -> None:
        self.sw = sw
        self.devs: dict[str, MemoryDevice] = {}
        self.now = 0.0

    def port(self, name: str, **cfg: object) -> Port:
        dev = MemoryDevice(name)
        self.devs[name] = dev
        return self.sw.add_port(PortConfig(name=name, kind="memory", **cfg), dev)  # type: ignore[arg-type]

    def send(self, name: str, frame: bytes, now: float | None = None) -> None:
        if now is not None:
            self.now = now
        p = self.sw.port_by_name(name)
        assert p is not None
        self.sw.receive_batch(p, [(b"", frame)], self.now)

    def got(self, name: str) -> list[bytes]:
        return self.devs[name].frames()

    def received(self, name: str) -> list[Ether]:
        """What port `name` sent, dissected by scapy, every checksum checked."""
        frames = self.got(name)
        for f in frames:
            assert bad_checksums(f) == []
        return [Ether(f) for f in frames]

    def install(self, flows: Iterable[str]) -> None:
        """Add flows written as ovs-ofctl writes them."""
        self.sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in flows])


@pytest.fixture
def rig() -> Callable[..., Rig]:
    def make(**kw: object) -> Rig:
        return Rig(Switch("sw", **kw))  # type: ignore[arg-type]

    return make


TwoPorts = Callable[[list[str]], Rig]


@pytest.fixture
def two_ports(rig: Callable[..., Rig]) -> TwoPorts:
    """A fail-secure switch with ports a (1) and b (2), no port security, running
    `flows`: the rig of the conntrack, NAT, FTP and fragment tests."""

    def make(flows: list[str]) -> Rig:
        r = rig(fail_mode="secure")
        r.port("a", port_security=False)
        r.port("b", port_security=False)
        r.install(flows)
        return r

    return make


__all__ = [
    "SNAT_IN_PLACE",
    "SNAT_RECIRC",
    "A",
    "B",
    "Rig",
    "TwoPorts",
    "X",
    "arp",
    "eth",
    "mac",
    "mac_int",
    "tcp",
    "udp",
]
