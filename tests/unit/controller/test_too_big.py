"""A packet too big for the next network: the router's check and the controller's answer.

Two dual-stack networks behind one router, n2 with an MTU of 1400, a port on
each, one chassis with a vnet switch of memory ports (in this process, or
behind an OpenFlow agent: the `check_pkt_larger` action over the wire).  An
IPv4 packet with DF and any IPv6 packet longer than 1400 bytes toward n2 are
answered with fragmentation needed (3/4) or packet too big (2/0) carrying the
MTU, routed back to the sender from the router's interface on its network;
an IPv4 packet without DF is dropped and counted (no datapath fragments);
one of 1400 bytes passes.  Judged by scapy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPerror6, IPv6
from scapy.layers.l2 import Ether

from tests.checksums import bad_checksums
from vnet.compiler.router import Punt as RouterPunt
from vnet.controller.punt import compiled_punts
from vnet.controller.service import Controller
from vnet.datapath import Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.store import SqliteStore

from .helpers import one_switch, until

MTU = 1400
SUBNETS = [("s1", "n1", "10.0.1.0/24"), ("s1v6", "n1", "fd00:1::/64"),
           ("s2", "n2", "10.0.2.0/24"), ("s2v6", "n2", "fd00:2::/64")]  # fmt: skip
MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [{"name": "hv1"}],
    "networks": [{"name": "n1", "tenant": "t"}, {"name": "n2", "tenant": "t", "mtu": MTU}],
    "subnets": [{"name": s, "tenant": "t", "network": n, "cidr": c} for s, n, c in SUBNETS],
    "ports": [
        {"name": "a", "tenant": "t", "network": "n1", "chassis": "hv1"},
        {"name": "b", "tenant": "t", "network": "n2", "chassis": "hv1"},
    ],
    "routers": [{"name": "r", "tenant": "t", "interfaces": [{"subnet": s} for s, _, _ in SUBNETS]}],
}


class World:
    def __init__(self, ctl: Controller, sw: Switch, devices: dict[str, MemoryDevice]) -> None:
        st = ctl.nb.state()
        self.ctl, self.sw, self.devices = ctl, sw, devices
        self.ports = {p.name: p for p in st.all("port")}
        (r,) = st.all("router")
        self.gw = {st.get("subnet", i.subnet).name: i.mac or "" for i in r.interfaces}

    def send(self, name: str, frame: bytes) -> None:
        p = self.sw.port_by_name(self.ports[name].iface)
        assert p is not None
        self.sw.receive(p, b"", frame)

    def got(self, name: str) -> list[Ether]:
        return [Ether(f) for f in self.devices[name].frames()]

    def packet(self, fam: int, ip_len: int, df: bool = True) -> bytes:
        """a's UDP packet to b of `ip_len` bytes of IP."""
        a, b = self.ports["a"], self.ports["b"]
        if fam == 4:
            e = Ether(src=a.mac, dst=self.gw["s1"])
            hdr = IP(src=a.ips[0], dst=b.ips[0], flags="DF" if df else 0, id=9)
            return bytes(e / hdr / UDP(sport=5000, dport=6000) / (b"x" * (ip_len - 28)))
        e = Ether(src=a.mac, dst=self.gw["s1v6"])
        hdr6 = IPv6(src=a.ips[1], dst=b.ips[1])
        return bytes(e / hdr6 / UDP(sport=5000, dport=6000) / (b"x" * (ip_len - 48)))


def run(test: Callable[[World], Awaitable[None]], over_openflow: bool = False) -> None:
    async def main() -> None:
        async with one_switch(MODEL, over_openflow) as (ctl, sw, devices):
            await test(World(ctl, sw, devices))

    asyncio.run(main())


def judged(f: Ether, w: World, fam: int, sent: bytes) -> None:
    """An error from the router's interface on n1 to a, its checksums right (the quote
    is cut, so its UDP checksum cannot be), quoting the packet from its IP header on."""
    a = w.ports["a"]
    assert [b for b in bad_checksums(bytes(f)) if not b.startswith("UDP in ICMP")] == []
    assert (f.src, f.dst) == (w.gw["s1" if fam == 4 else "s1v6"], a.mac)
    if fam == 4:
        assert (f[IP].src, f[IP].dst) == ("10.0.1.1", a.ips[0])
        assert (f[ICMP].type, f[ICMP].code, f[ICMP].nexthopmtu) == (3, 4, MTU)
        assert f[IPerror].dst == w.ports["b"].ips[0] and f[IPerror].id == 9
        assert bytes(f[IPerror])[12:40] == sent[14 + 12 : 14 + 40]  # addresses, ports, ...
        assert len(f[IP]) <= 576
    else:
        assert (f[IPv6].src, f[IPv6].dst) == ("fd00:1::1", a.ips[1])
        assert f[ICMPv6PacketTooBig].mtu == MTU
        assert f[IPerror6].dst == w.ports["b"].ips[1]
        assert bytes(f[IPerror6])[8:48] == sent[14 + 8 : 14 + 48]
        assert len(f[IPv6]) <= 1280


@pytest.mark.parametrize("fam", [4, 6])
def test_longer_than_the_networks_mtu_is_answered_with_the_mtu(fam: int) -> None:
    async def t(w: World) -> None:
        sent = w.packet(fam, MTU + 1)
        w.send("a", sent)
        await until(lambda: bool(w.devices["a"].sent))
        (f,) = w.got("a")
        judged(f, w, fam, sent)
        assert w.got("b") == []
        c = w.ctl.punter.counts
        assert c["icmp_too_big"] == 1 and c["failed"] == 0
        # exactly the MTU passes, routed (the cached decision is not reused for it)
        w.send("a", w.packet(fam, MTU))
        (g,) = w.got("b")
        assert len(g[IP if fam == 4 else IPv6]) == MTU
        # and longer again is answered again, not forwarded by the cache
        again = w.packet(fam, MTU + 100)
        w.send("a", again)
        await until(lambda: bool(w.devices["a"].sent))
        (f2,) = w.got("a")
        judged(f2, w, fam, again)
        assert w.got("b") == [] and c["icmp_too_big"] == 2

    run(t)


def test_ipv4_without_df_is_dropped_and_counted() -> None:
    async def t(w: World) -> None:
        w.send("a", w.packet(4, 1480, df=False))
        await until(lambda: w.ctl.punter.counts["too_big_dropped_fragmentable"] == 1)
        assert w.got("a") == [] and w.got("b") == []
        (r,) = w.ctl.nb.state().all("router")
        assert w.ctl.stats()["punts"]["routers"] == {r.id: {"dropped_fragmentable": 1}}

    run(t)


def test_toward_the_wider_network_nothing_is_too_big() -> None:
    """b's 1400-byte packets to a's network (MTU 1442, what the tunnels carry) pass."""

    async def t(w: World) -> None:
        a, b = w.ports["a"], w.ports["b"]
        e = Ether(src=b.mac, dst=w.gw["s2"]) / IP(src=b.ips[0], dst=a.ips[0], flags="DF")
        w.send("b", bytes(e / UDP() / (b"y" * (1442 - 28))))
        (g,) = w.got("a")
        assert len(g[IP]) == 1442
        w.send("b", bytes(e / UDP() / (b"y" * (1443 - 28))))
        await until(lambda: bool(w.devices["b"].sent))
        (f,) = w.got("b")
        assert f[ICMP].nexthopmtu == 1442 and f[IP].src == "10.0.2.1"

    run(t)


def test_over_openflow_the_check_and_the_answer() -> None:
    """The path of an Open vSwitch chassis: check_pkt_larger in a flow-mod, packet-in,
    and the answer's packet-out routed through the router's tables."""

    async def t(w: World) -> None:
        sent = w.packet(4, 1450)
        w.send("a", sent)
        await until(lambda: bool(w.devices["a"].sent))
        (f,) = w.got("a")
        judged(f, w, 4, sent)
        w.send("a", w.packet(4, 1000))
        (g,) = w.got("b")
        assert g[IP].ttl == 63

    run(t, over_openflow=True)


def test_each_in_out_pair_of_a_family_has_its_punt_with_the_mtu() -> None:
    ctl = Controller(SqliteStore())
    ctl.nb.apply(MODEL)
    st = ctl.nb.state()
    big = [p for p in compiled_punts(ctl.logical_flows(st)).values()
           if isinstance(p, RouterPunt) and p.reason == "too-big"]  # fmt: skip
    n2 = next(n for n in st.all("network") if n.name == "n2")
    n1 = next(n for n in st.all("network") if n.name == "n1")
    assert n2.mtu == MTU and n1.mtu and n1.mtu > MTU
    # 2 interfaces a family, each in interface toward each out interface
    assert sorted((p.family, p.icmp, p.mtu) for p in big) == sorted(
        [(4, (3, 4), MTU)] * 2 + [(4, (3, 4), n1.mtu)] * 2
        + [(6, (2, 0), MTU)] * 2 + [(6, (2, 0), n1.mtu)] * 2
    )  # fmt: skip
    assert all(p.key for p in big)
