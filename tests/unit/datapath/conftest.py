from __future__ import annotations

from collections.abc import Callable

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnet.datapath import PortConfig, Switch
from vnet.datapath.port import Port
from vnet.datapath.ports.memory import MemoryDevice
from vnet.packet.addr import mac_int


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


@pytest.fixture
def rig() -> Callable[..., Rig]:
    def make(**kw: object) -> Rig:
        return Rig(Switch("sw", **kw))  # type: ignore[arg-type]

    return make


__all__ = ["Rig", "arp", "mac", "mac_int", "udp"]
