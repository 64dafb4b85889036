"""A router's ICMP errors: the controller answers its punts (time exceeded, unreachable).

The model is admitted through the northbound (two dual-stack networks behind one
router, a port on each, one chassis); the switch is a vnet switch with memory ports,
in this process or behind an OpenFlow agent that dials the controller.  The answers
are judged by scapy; the cases no answer is due to go through `handle` on the
compiled punt map, with a fake southbound that records what would be sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
)
from scapy.layers.l2 import Ether

from tests.checksums import bad_checksums
from vnet.compiler.router import Punt as RouterPunt
from vnet.controller.punt import PacketIn, Punter, compiled_punts
from vnet.controller.service import Controller
from vnet.datapath import Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.pipeline.actions import Action
from vnet.store import SqliteStore

from .helpers import one_switch, until

SUBNETS = [("s1", "n1", "10.0.1.0/24"), ("s1v6", "n1", "fd00:1::/64"),
           ("s2", "n2", "10.0.2.0/24"), ("s2v6", "n2", "fd00:2::/64")]  # fmt: skip
MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [{"name": "hv1"}],
    "networks": [{"name": "n1", "tenant": "t"}, {"name": "n2", "tenant": "t"}],
    "subnets": [{"name": s, "tenant": "t", "network": n, "cidr": c} for s, n, c in SUBNETS],
    "ports": [
        {"name": "a", "tenant": "t", "network": "n1", "chassis": "hv1"},
        {"name": "b", "tenant": "t", "network": "n2", "chassis": "hv1"},
    ],
    "routers": [{"name": "r", "tenant": "t", "interfaces": [{"subnet": s} for s, _, _ in SUBNETS]}],
}
GW4, GW6 = "10.0.1.1", "fd00:1::1"


@dataclass
class World:
    ctl: Controller
    sw: Switch
    devices: dict[str, MemoryDevice]
    ports: dict[str, Any]  # name -> model port
    gw: dict[str, str]  # subnet name -> the router interface's MAC

    def send(self, name: str, frame: bytes) -> None:
        p = self.sw.port_by_name(self.ports[name].iface)
        assert p is not None
        self.sw.receive(p, b"", frame)

    def got(self, name: str) -> list[Ether]:
        return [Ether(f) for f in self.devices[name].frames()]

    def ofport(self, name: str) -> int:
        p = self.sw.port_by_name(self.ports[name].iface)
        assert p is not None
        return p.port_no

    def ping(self, fam: int, dst: str, ttl: int = 64) -> bytes:
        a = self.ports["a"]
        if fam == 4:
            e = Ether(src=a.mac, dst=self.gw["s1"])
            return bytes(
                e / IP(src=a.ips[0], dst=dst, ttl=ttl, id=77) / ICMP(id=7, seq=1) / b"ping"
            )
        e = Ether(src=a.mac, dst=self.gw["s1v6"])
        return bytes(e / IPv6(src=a.ips[1], dst=dst, hlim=ttl) / ICMPv6EchoRequest(id=7, seq=1))

    def far(self, fam: int) -> str:
        return str(self.ports["b"].ips[0 if fam == 4 else 1])


def run(test: Callable[[World], Awaitable[None]], over_openflow: bool = False) -> None:
    async def main() -> None:
        async with one_switch(MODEL, over_openflow) as (ctl, sw, devices):
            st = ctl.nb.state()
            (r,) = st.all("router")
            gw = {st.get("subnet", i.subnet).name: i.mac or "" for i in r.interfaces}
            await test(World(ctl, sw, devices, {p.name: p for p in st.all("port")}, gw))

    asyncio.run(main())


def judged(f: Ether, w: World, fam: int) -> Ether:
    """An error from the router's interface on n1 to a, every checksum right."""
    a = w.ports["a"]
    assert bad_checksums(bytes(f)) == []
    assert (f.src, f.dst) == (w.gw["s1" if fam == 4 else "s1v6"], a.mac)
    ip = f[IP] if fam == 4 else f[IPv6]
    assert (ip.src, ip.dst) == ((GW4, a.ips[0]) if fam == 4 else (GW6, a.ips[1]))
    return f


@pytest.mark.parametrize("fam", [4, 6])
def test_ttl_one_is_answered_with_time_exceeded_from_the_router(fam: int) -> None:
    async def t(w: World) -> None:
        sent = w.ping(fam, w.far(fam), ttl=1)
        w.send("a", sent)
        await until(lambda: bool(w.devices["a"].sent))
        (f,) = w.got("a")
        judged(f, w, fam)
        if fam == 4:
            assert (f[ICMP].type, f[ICMP].code) == (11, 0)
            assert bytes(f[IPerror]) == sent[14:] and f[IPerror].ttl == 1  # as it came
        else:
            assert ICMPv6TimeExceeded in f and f[ICMPv6TimeExceeded].code == 0
            assert bytes(f[IPerror6]) == sent[14:] and f[IPerror6].hlim == 1
        assert w.got("b") == []
        c = w.ctl.punter.counts
        assert c["icmp_ttl_expired"] == 1 and c["failed"] == 0
        (r,) = w.ctl.nb.state().all("router")
        assert w.ctl.stats()["punts"]["routers"] == {r.id: {"sent": 1}}

    run(t)


@pytest.mark.parametrize("fam", [4, 6])
def test_no_route_is_answered_with_unreachable(fam: int) -> None:
    async def t(w: World) -> None:
        nowhere = "192.168.7.7" if fam == 4 else "fd00:99::7"
        w.send("a", w.ping(fam, nowhere))
        await until(lambda: bool(w.devices["a"].sent))
        (f,) = w.got("a")
        judged(f, w, fam)
        if fam == 4:
            assert (f[ICMP].type, f[ICMP].code) == (3, 0) and f[IPerror].dst == nowhere
        else:
            assert f[ICMPv6DestUnreach].code == 0 and f[IPerror6].dst == nowhere
        assert w.ctl.punter.counts["icmp_no_route"] == 1

    run(t)


def test_over_openflow_traceroutes_first_hop_is_answered() -> None:
    """The punt path of an Open vSwitch chassis: packet-in and packet-out over OpenFlow."""

    async def t(w: World) -> None:
        a = w.ports["a"]
        probe = Ether(src=a.mac, dst=w.gw["s1"]) / IP(src=a.ips[0], dst=w.far(4), ttl=1) / UDP(sport=40001, dport=33434)  # fmt: skip
        w.send("a", bytes(probe))
        await until(lambda: bool(w.devices["a"].sent))
        (f,) = w.got("a")
        judged(f, w, 4)
        assert f[ICMP].type == 11 and f[UDPerror].dport == 33434
        # and with TTL 2 the probe reaches b, routed
        w.send("a", bytes(Ether(src=a.mac, dst=w.gw["s1"]) / IP(src=a.ips[0], dst=w.far(4), ttl=2) / UDP(sport=40001, dport=33435)))  # fmt: skip
        (g,) = w.got("b")
        assert g[IP].ttl == 1 and g[UDP].dport == 33435

    run(t, over_openflow=True)


# -- through `handle`, with a fake southbound ---------------------------------------------------
class FakeSouthbound:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes, tuple[Action, ...]]] = []

    async def packet_out(
        self, in_port: int, frame: bytes, out_port: int = 0, actions: Sequence[Action] = ()
    ) -> None:
        self.sent.append((in_port, out_port, frame, tuple(actions)))


@dataclass
class FakeLink:
    southbound: FakeSouthbound = field(default_factory=FakeSouthbound)
    chassis: str | None = None
    ofports: dict[str, int] = field(default_factory=dict)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def offline(**kw: Any) -> tuple[Punter, FakeLink, dict[str, int], World]:
    """A punter on the compiled model, its switch a fake; the cookies of the router's
    punts by reason and family (`ttl-expired/4`, ...)."""
    ctl = Controller(SqliteStore())
    ctl.nb.apply(MODEL)
    st = ctl.nb.state()
    punts = compiled_punts(ctl.logical_flows(st))
    mine = {c: p for c, p in punts.items() if isinstance(p, RouterPunt)}
    cookies = {f"{p.reason}/{p.family}": c for c, p in mine.items()
               if p.interface in (1, 2) and p.reason != "too-big"}  # fmt: skip
    assert len(cookies) == 4  # ttl-expired and no-route, for a's interfaces of each family
    assert not set(mine) & {c for c, p in punts.items() if not isinstance(p, RouterPunt)}
    link = FakeLink()
    pu = Punter(ctl.nb.state, lambda _dpid: link, lambda s: compiled_punts(ctl.logical_flows(s)), **kw)  # fmt: skip
    (r,) = st.all("router")
    gw = {st.get("subnet", i.subnet).name: i.mac or "" for i in r.interfaces}
    world = World(ctl, Switch("unused"), {}, {p.name: p for p in st.all("port")}, gw)
    return pu, link, cookies, world


def test_the_answer_goes_straight_out_of_in_port_marked_as_the_switchs_own() -> None:
    async def main() -> None:
        pu, link, cookies, w = offline()
        await pu.handle(PacketIn(1, 7, cookies["ttl-expired/4"], "action", w.ping(4, w.far(4), 1)))
        ((in_port, out_port, frame, actions),) = link.southbound.sent
        assert (in_port, out_port) == (0xFFFFFFFD, 7)  # from the controller, out of port 7
        assert [a.format() for a in actions] == ["load:0x1->NXM_NX_REG5[1]"]
        assert Ether(frame)[ICMP].type == 11

    asyncio.run(main())


def test_no_error_about_an_error_a_fragment_a_multicast_or_without_a_port() -> None:
    async def main() -> None:
        pu, link, cookies, w = offline()
        a = w.ports["a"]
        e = Ether(src=a.mac, dst=w.gw["s1"])
        ttl4 = cookies["ttl-expired/4"]
        cases = {
            "icmp_error": (
                ttl4,
                7,
                e / IP(src=a.ips[0], dst=w.far(4), ttl=1) / ICMP(type=3, code=1) / IP() / UDP(),
            ),
            "fragment": (
                ttl4,
                7,
                e / IP(src=a.ips[0], dst=w.far(4), ttl=1, frag=185) / (b"x" * 40),
            ),
            "multicast": (ttl4, 7, e / IP(src=a.ips[0], dst="239.1.2.3", ttl=1) / UDP()),
            "link_multicast": (
                ttl4,
                7,
                Ether(src=a.mac, dst="ff:ff:ff:ff:ff:ff")
                / IP(src=a.ips[0], dst=w.far(4), ttl=1)
                / UDP(),
            ),
            "source": (ttl4, 7, e / IP(src="0.0.0.0", dst=w.far(4), ttl=1) / UDP()),
            "no_port": (
                cookies["no-route/4"],
                0,
                # the echo reply the router made of a ping to its other address: in_port 0
                e / IP(src="10.0.2.1", dst="192.168.1.1") / ICMP(type=0),
            ),
            "icmp_error_v6": (
                cookies["ttl-expired/6"],
                7,
                Ether(src=a.mac, dst=w.gw["s1v6"])
                / IPv6(src=a.ips[1], dst=w.far(6), hlim=1)
                / ICMPv6TimeExceeded()
                / IPv6()
                / UDP(),
            ),
        }
        for cookie, in_port, pkt in cases.values():
            await pu.handle(PacketIn(1, in_port, cookie, "action", bytes(pkt)))
        assert link.southbound.sent == []
        c = pu.counts
        assert c["icmp_silent_icmp_error"] == 2
        for why in ("fragment", "multicast", "link_multicast", "no_port"):
            assert c[f"icmp_silent_{why}"] == 1, why
        assert c["icmp_silent_source"] == 1
        (r,) = w.ctl.nb.state().all("router")
        assert pu.stats()["routers"] == {r.id: {"silent": len(cases)}}

    asyncio.run(main())


def test_each_router_is_rate_limited_by_a_token_bucket_and_the_rest_counted() -> None:
    async def main() -> None:
        clock = Clock()
        pu, link, cookies, w = offline(icmp_rate=10.0, icmp_burst=5, now=clock)
        probe = PacketIn(1, 7, cookies["ttl-expired/4"], "action", w.ping(4, w.far(4), 1))
        for _ in range(8):
            await pu.handle(probe)
        assert len(link.southbound.sent) == 5 and pu.counts["icmp_rate_limited"] == 3
        clock.t += 0.25  # 2.5 tokens back: two more errors
        for _ in range(4):
            await pu.handle(probe)
        assert len(link.southbound.sent) == 7 and pu.counts["icmp_rate_limited"] == 5
        clock.t += 60  # a long pause refills to the burst, no more
        for _ in range(7):
            await pu.handle(probe)
        assert len(link.southbound.sent) == 12 and pu.counts["icmp_rate_limited"] == 7
        (r,) = w.ctl.nb.state().all("router")
        assert pu.stats()["routers"][r.id] == {"rate_limited": 7, "sent": 12}
        assert pu.counts["icmp_ttl_expired"] == 12

    asyncio.run(main())


def test_two_routers_have_a_bucket_each_and_a_deleted_routers_goes() -> None:
    async def main() -> None:
        pu, link, cookies, w = offline(icmp_rate=1.0, icmp_burst=1, now=Clock())
        nb = w.ctl.nb
        nb.apply({**MODEL,
                  "networks": [*MODEL["networks"], {"name": "n3", "tenant": "t"}],
                  "subnets": [*MODEL["subnets"], {"name": "s3", "tenant": "t", "network": "n3", "cidr": "10.0.3.0/24"}],
                  "ports": [*MODEL["ports"], {"name": "c", "tenant": "t", "network": "n3", "chassis": "hv1"}],
                  "routers": [*MODEL["routers"], {"name": "r2", "tenant": "t", "interfaces": [{"subnet": "s3"}]}]})  # fmt: skip
        st = nb.state()
        r2 = st.find("router", "r2")
        c = next(p for p in st.all("port") if p.name == "c")
        punts = compiled_punts(w.ctl.logical_flows(st))
        ttl2 = next(k for k, p in punts.items() if isinstance(p, RouterPunt) and p.router == r2.id and p.reason == "ttl-expired")  # fmt: skip
        mac2 = r2.interfaces[0].mac
        probe2 = bytes(Ether(src=c.mac, dst=mac2) / IP(src=c.ips[0], dst="10.0.1.5", ttl=1) / UDP())  # fmt: skip
        probe1 = PacketIn(1, 7, cookies["ttl-expired/4"], "action", w.ping(4, w.far(4), 1))
        for _ in range(2):
            await pu.handle(probe1)
            await pu.handle(PacketIn(1, 8, ttl2, "action", probe2))
        assert [s[1] for s in link.southbound.sent] == [7, 8]  # one each: the buckets are apart
        assert Ether(link.southbound.sent[1][2])[IP].src == "10.0.3.1"
        assert set(pu.stats()["routers"]) == {w.ctl.nb.state().all("router")[0].id, r2.id}
        nb.delete("router", "r2")
        await pu.handle(probe1)  # the new model's map: r2's bucket and counts are gone
        assert set(pu.stats()["routers"]) == {r.id for r in nb.state().all("router")}

    asyncio.run(main())
