"""A router's neighbours that are not model ports: asked for, learned, aged.

The model (two dual-stack networks behind one router, a port on each, one
chassis) is admitted through the northbound.  End to end, a vnet switch in this
process: a ping to an address no port holds makes the controller ask for it
(ARP request, neighbour solicitation) into the destination's network; a
workload there (port b, without port security: it answers for an extra
address) replies, the controller learns the binding into the store, and the
next ping is delivered to that MAC.  The rest feeds packets to the punt
handler with a fake southbound, and runs the aging with an injected clock.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from tests.checksums import bad_checksums
from vnet.compiler.neighbour import Learn, Resolve
from vnet.compiler.stages import stage_of
from vnet.controller.neighbour import Neighbours
from vnet.controller.punt import PacketIn, Punter, compiled_punts
from vnet.controller.service import Controller
from vnet.datapath import Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.model.neighbour import neighbour_id
from vnet.model.rules import ModelError
from vnet.pipeline.actions import Resubmit, SetField
from vnet.store import SqliteStore

from .helpers import one_switch, until
from .test_router_punt import MODEL, FakeLink

OTHER_MAC = "02:aa:bb:cc:dd:ee"


def model() -> dict[str, Any]:
    doc = copy.deepcopy(MODEL)
    doc["ports"][1]["port_security"] = False  # b answers for an extra address too
    return doc


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- end to end: a vnet switch in this process ----------------------------------------------
def run(
    test: Callable[[Controller, Switch, dict[str, MemoryDevice], dict[str, Any]], Awaitable[None]],
) -> None:
    async def main() -> None:
        async with one_switch(model()) as (ctl, sw, devices):
            st = ctl.nb.state()
            (r,) = st.all("router")
            gw = {st.get("subnet", i.subnet).name: i.mac or "" for i in r.interfaces}
            await test(ctl, sw, devices, {"gw": gw, **{p.name: p for p in st.all("port")}})

    asyncio.run(main())


def _send(sw: Switch, port: Any, frame: bytes) -> None:
    p = sw.port_by_name(port.iface)
    assert p is not None
    sw.receive(p, b"", frame)


def test_an_unknown_ipv4_next_hop_is_asked_for_learned_and_then_reached() -> None:
    async def t(
        ctl: Controller, sw: Switch, dev: dict[str, MemoryDevice], m: dict[str, Any]
    ) -> None:
        a, b, gw = m["a"], m["b"], m["gw"]
        ping = Ether(src=a.mac, dst=gw["s1"]) / IP(src=a.ips[0], dst="10.0.2.77") / ICMP(id=1)
        _send(sw, a, bytes(ping))
        await until(lambda: bool(dev["b"].sent))
        (req,) = [Ether(f) for f in dev["b"].frames()]  # the request, flooded on n2
        assert req.dst == "ff:ff:ff:ff:ff:ff" and req.src == gw["s2"]
        assert (req[ARP].op, req[ARP].hwsrc, req[ARP].psrc, req[ARP].pdst) == (
            1,
            gw["s2"],
            "10.0.2.1",
            "10.0.2.77",
        )
        assert dev["a"].frames() == []  # the punted ping was dropped, nothing came back
        assert ctl.neighbours.counts["resolve_arp"] == 1
        # b answers for 10.0.2.77 with its MAC
        reply = Ether(src=b.mac, dst=gw["s2"]) / ARP(
            op=2, hwsrc=b.mac, psrc="10.0.2.77", hwdst=gw["s2"], pdst="10.0.2.1"
        )
        _send(sw, b, bytes(reply))
        await until(lambda: bool(ctl.nb.state().all("neighbour")))
        (n,) = ctl.nb.state().all("neighbour")
        (r,) = ctl.nb.state().all("router")
        assert (n.router, n.ip, n.mac, n.name, n.tenant) == (
            r.id,
            "10.0.2.77",
            b.mac,
            "10.0.2.77",
            r.tenant,
        )
        assert n.network == b.network
        await ctl.wait_synced()
        _send(sw, a, bytes(ping))
        (f,) = [Ether(x) for x in dev["b"].frames()]
        assert (f.src, f.dst, f[IP].dst, f[IP].ttl) == (gw["s2"], b.mac, "10.0.2.77", 63)
        assert ctl.neighbours.counts["resolve_arp"] == 1  # resolved: no second request
        # half its age on: asked for again from the chassis, and b's answer refreshes it
        later = n.seen_at + 200
        ctl.neighbours.clock = lambda: later
        assert await ctl.probe_neighbours() == 1
        (probe,) = [Ether(x) for x in dev["b"].frames()]
        assert (probe[ARP].op, probe[ARP].pdst, probe.src) == (1, "10.0.2.77", gw["s2"])
        _send(sw, b, bytes(reply))
        await until(lambda: ctl.nb.state().all("neighbour")[0].seen_at == later)

    run(t)


def test_an_unknown_ipv6_next_hop_is_solicited_learned_and_then_reached() -> None:
    async def t(
        ctl: Controller, sw: Switch, dev: dict[str, MemoryDevice], m: dict[str, Any]
    ) -> None:
        a, b, gw = m["a"], m["b"], m["gw"]
        ping = (
            Ether(src=a.mac, dst=gw["s1v6"])
            / IPv6(src=a.ips[1], dst="fd00:2::77")
            / ICMPv6EchoRequest()
        )
        _send(sw, a, bytes(ping))
        await until(lambda: bool(dev["b"].sent))
        (ns,) = [Ether(f) for f in dev["b"].frames()]
        assert bad_checksums(bytes(ns)) == []
        assert ns.dst == "33:33:ff:00:00:77" and ns.src == gw["s2v6"]
        assert (ns[IPv6].src, ns[IPv6].dst, ns[IPv6].hlim) == ("fd00:2::1", "ff02::1:ff00:77", 255)
        assert ns[ICMPv6ND_NS].tgt == "fd00:2::77" and ns[ICMPv6NDOptSrcLLAddr].lladdr == gw["s2v6"]
        na = (
            Ether(src=b.mac, dst=gw["s2v6"])
            / IPv6(src="fd00:2::77", dst="fd00:2::1", hlim=255)
            / ICMPv6ND_NA(tgt="fd00:2::77", S=1, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr=b.mac)
        )
        _send(sw, b, bytes(na))
        await until(lambda: bool(ctl.nb.state().all("neighbour")))
        (n,) = ctl.nb.state().all("neighbour")
        assert (n.ip, n.mac, n.name) == ("fd00:2::77", b.mac, "fd00-2--77")
        await ctl.wait_synced()
        _send(sw, a, bytes(ping))
        (f,) = [Ether(x) for x in dev["b"].frames()]
        assert (f.dst, f[IPv6].dst, f[IPv6].hlim) == (b.mac, "fd00:2::77", 63)

    run(t)


# -- through `handle`, with a fake southbound ---------------------------------------------------
class Offline:
    """A punter with neighbours on the compiled model, its switch a fake."""

    def __init__(self, age: float = 300.0) -> None:
        self.ctl = Controller(SqliteStore())
        self.ctl.nb.apply(model())
        self.clock = Clock()
        self.mono = Clock(50.0)
        self.nbs = Neighbours(self.ctl.nb, age, clock=self.clock, monotonic=self.mono)
        self.link = FakeLink()
        self.pu = Punter(
            self.ctl.nb.state,
            lambda _dpid: self.link,
            lambda s: compiled_punts(self.ctl.logical_flows(s)),
            neighbours=self.nbs,
        )
        st = self.ctl.nb.state()
        (self.router,) = st.all("router")
        self.gw = {st.get("subnet", i.subnet).name: i.mac or "" for i in self.router.interfaces}
        self.ports = {p.name: p for p in st.all("port")}

    def cookie(self, cls: type, itf: int, nexthop: str | None = None) -> int:
        punts = compiled_punts(self.ctl.logical_flows(self.ctl.nb.state()))
        found = {
            p: c
            for c, p in punts.items()
            if isinstance(p, cls) and p.interface == itf and (cls is Learn or p.nexthop == nexthop)
        }
        (c,) = found.values()  # one punt (an IPv6 interface's NA and NS flows share it)
        return c

    def handle(self, cookie: int, frame: Any, in_port: int = 0) -> None:
        asyncio.run(self.pu.handle(PacketIn(1, in_port, cookie, "action", bytes(frame))))

    def neighbours(self) -> list[Any]:
        return list(self.ctl.nb.state().all("neighbour"))


def arp_from(mac: str, ip: str, op: int = 2, dst: str = "ff:ff:ff:ff:ff:ff") -> Ether:
    return Ether(src=mac, dst=dst) / ARP(op=op, hwsrc=mac, psrc=ip, pdst="10.0.2.1")


def test_an_arp_reply_request_or_gratuitous_arp_is_learned_once_and_refreshed_at_half_the_age() -> (
    None
):
    o = Offline(age=300)
    learn = o.cookie(Learn, 3)  # s2, the router's IPv4 interface on n2
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.50"))
    (n,) = o.neighbours()
    assert (n.ip, n.mac, n.seen_at) == ("10.0.2.50", OTHER_MAC, o.clock.t)
    rev = o.ctl.nb.state().revision
    o.clock.t += 100  # younger than half the age: nothing written
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.50", op=1))
    assert o.ctl.nb.state().revision == rev and o.nbs.counts["neighbour_fresh"] == 1
    o.clock.t += 60  # 160 s: older than half of 300 -- refreshed
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.50", op=1))
    (n,) = o.neighbours()
    assert n.seen_at == o.clock.t and o.nbs.counts["neighbour_refreshed"] == 1
    o.handle(learn, arp_from("02:00:00:00:99:99", "10.0.2.50"))  # moved: written at once
    (n,) = o.neighbours()
    assert n.mac == "02:00:00:00:99:99" and o.nbs.counts["neighbour_moved"] == 1
    # gratuitous ARP: sender and target the same address
    garp = Ether(src=OTHER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=OTHER_MAC, psrc="10.0.2.60", pdst="10.0.2.60"
    )
    o.handle(learn, garp)
    assert {x.ip for x in o.neighbours()} == {"10.0.2.50", "10.0.2.60"}
    assert o.nbs.counts["neighbour_learned"] == 2


def test_what_is_not_learned() -> None:
    o = Offline()
    learn4, learn6 = o.cookie(Learn, 3), o.cookie(Learn, 4)
    r6 = o.gw["s2v6"]
    cases = {
        "off_subnet": (learn4, arp_from(OTHER_MAC, "10.0.1.50")),  # n1's subnet at n2
        "own": (learn4, arp_from(OTHER_MAC, "10.0.2.1")),  # the router's own address
        "broadcast": (learn4, arp_from(OTHER_MAC, "10.0.2.255")),
        "multicast_mac": (learn4, arp_from("01:00:5e:00:00:01", "10.0.2.50")),
        "no_address": (learn4, arp_from(OTHER_MAC, "0.0.0.0")),
        "hop_limit": (
            learn6,
            Ether(src=OTHER_MAC, dst=r6)
            / IPv6(src="fd00:2::50", dst="fd00:2::1", hlim=64)
            / ICMPv6ND_NA(tgt="fd00:2::50")
            / ICMPv6NDOptDstLLAddr(lladdr=OTHER_MAC),
        ),
        "dad": (
            learn6,
            Ether(src=OTHER_MAC, dst="33:33:ff:00:00:50")
            / IPv6(src="::", dst="ff02::1:ff00:50", hlim=255)
            / ICMPv6ND_NS(tgt="fd00:2::50"),
        ),
        "ns_off_subnet": (
            learn6,
            Ether(src=OTHER_MAC, dst=r6)
            / IPv6(src="fd00:1::50", dst="fd00:2::1", hlim=255)
            / ICMPv6ND_NS(tgt="fd00:2::1")
            / ICMPv6NDOptSrcLLAddr(lladdr=OTHER_MAC),
        ),
        "not_arp": (
            learn4,
            Ether(src=OTHER_MAC, dst=o.gw["s2"]) / IP(src="10.0.2.50", dst="10.0.2.1") / ICMP(),
        ),
    }
    for cookie, frame in cases.values():
        o.handle(cookie, frame)
    assert o.neighbours() == []
    c = o.nbs.counts
    assert c["neighbour_ignored_off_subnet"] == 3 and c["neighbour_ignored_own"] == 1
    assert c["neighbour_ignored_mac"] == 1
    assert c["neighbour_ignored_malformed"] == 4  # 0.0.0.0, hop limit, DAD, not ARP
    assert o.link.southbound.sent == []


def test_neighbour_advertisements_and_solicitations_are_learned() -> None:
    o = Offline()
    learn6 = o.cookie(Learn, 4)
    r6 = o.gw["s2v6"]
    na = (
        Ether(src=OTHER_MAC, dst=r6)
        / IPv6(src="fe80::1", dst="fd00:2::1", hlim=255)
        / ICMPv6ND_NA(tgt="fd00:2::50")
        / ICMPv6NDOptDstLLAddr(lladdr=OTHER_MAC)
    )
    o.handle(learn6, na)
    bare = (
        Ether(src="02:00:00:00:77:77", dst=r6)
        / IPv6(src="fd00:2::51", dst="fd00:2::1", hlim=255)
        / ICMPv6ND_NA(tgt="fd00:2::51")
    )
    o.handle(learn6, bare)  # no target link-layer option: the frame's source MAC
    ns = (
        Ether(src=OTHER_MAC, dst=r6)
        / IPv6(src="fd00:2::52", dst="fd00:2::1", hlim=255)
        / ICMPv6ND_NS(tgt="fd00:2::1")
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:52:52")
    )
    o.handle(learn6, ns)
    got = {n.ip: n.mac for n in o.neighbours()}
    assert got == {
        "fd00:2::50": OTHER_MAC,
        "fd00:2::51": "02:00:00:00:77:77",
        "fd00:2::52": "02:00:00:00:52:52",
    }


def test_a_resolve_punt_is_asked_for_into_the_network_and_rate_limited() -> None:
    o = Offline()
    a = o.ports["a"]
    ping = (
        Ether(src=o.gw["s2"], dst="00:00:00:00:00:00")
        / IP(src=a.ips[0], dst="10.0.2.77", ttl=63)
        / ICMP()
    )
    resolve = o.cookie(Resolve, 3)
    o.handle(resolve, ping, in_port=7)
    ((in_port, out_port, frame, actions),) = o.link.southbound.sent
    assert (in_port, out_port) == (0xFFFFFFFD, None)  # no output: the actions forward it
    f = Ether(frame)
    assert (f.dst, f.src, f[ARP].op, f[ARP].psrc, f[ARP].pdst) == (
        "ff:ff:ff:ff:ff:ff",
        o.gw["s2"],
        1,
        "10.0.2.1",
        "10.0.2.77",
    )
    n2 = o.ctl.nb.state().get("network", o.ports["b"].network)
    key = next(i.tunnel_key for i in o.router.interfaces if o.gw["s2"] == i.mac)
    assert actions[0].format() == "load:0x1->NXM_NX_REG5[1]"  # the switch's own answer
    sets = {a.slot: a.value for a in actions if isinstance(a, SetField)}
    from vnet.pipeline.fields import lookup

    assert sets == {lookup("metadata").index: n2.segment_id, lookup("reg6").index: key}
    (res,) = [a for a in actions if isinstance(a, Resubmit)]
    assert res.table is not None and stage_of(res.table) == "ls_in_l2_lkup"
    # again within the interval: held back; after it, asked again
    o.handle(resolve, ping)
    assert len(o.link.southbound.sent) == 1 and o.nbs.counts["resolve_rate_limited"] == 1
    o.mono.t += 1.5
    o.handle(resolve, ping)
    assert len(o.link.southbound.sent) == 2 and o.nbs.counts["resolve_arp"] == 2


def test_a_static_next_hop_is_asked_for_by_its_own_address() -> None:
    doc = model()
    doc["routers"][0]["routes"] = [{"cidr": "172.16.0.0/16", "nexthop": "10.0.2.254"}]
    o = Offline()
    o.ctl.nb.apply(doc)
    a = o.ports["a"]
    ping = Ether(src=o.gw["s2"]) / IP(src=a.ips[0], dst="172.16.3.4") / ICMP()
    o.handle(o.cookie(Resolve, 3, "10.0.2.254"), ping)
    ((_, _, frame, _),) = o.link.southbound.sent
    assert Ether(frame)[ARP].pdst == "10.0.2.254"


def test_aging_removes_what_was_not_heard_from_and_what_no_router_can_use() -> None:
    o = Offline(age=300)
    learn = o.cookie(Learn, 3)
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.50"))
    o.clock.t += 200
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.51"))
    assert o.nbs.age_out() == 0
    o.clock.t += 101  # .50 unheard for 301 s, .51 for 101 s
    assert o.nbs.age_out() == 1
    assert [n.ip for n in o.neighbours()] == ["10.0.2.51"]
    # the router leaves n2's IPv4 subnet: the binding is no use any more
    doc = model()
    doc["routers"][0]["interfaces"] = [{"subnet": s} for s in ("s1", "s1v6", "s2v6")]
    o.ctl.nb.apply(doc)
    assert len(o.neighbours()) == 1
    assert o.nbs.age_out() == 1 and o.neighbours() == []
    assert o.nbs.counts["neighbour_aged"] == 2


def test_age_zero_never_expires_and_a_negative_age_is_refused() -> None:
    o = Offline(age=0)
    o.handle(o.cookie(Learn, 3), arp_from(OTHER_MAC, "10.0.2.50"))
    o.clock.t += 10**7
    assert o.nbs.age_out() == 0 and len(o.neighbours()) == 1
    with pytest.raises(ValueError, match="neighbour_age"):
        Neighbours(o.ctl.nb, -1)


def test_deleting_the_router_takes_its_neighbours() -> None:
    o = Offline()
    o.handle(o.cookie(Learn, 3), arp_from(OTHER_MAC, "10.0.2.50"))
    assert len(o.neighbours()) == 1
    o.ctl.nb.delete("router", "r")
    assert o.neighbours() == []


def test_the_store_refuses_a_binding_the_router_cannot_use() -> None:
    o = Offline()
    nb, r = o.ctl.nb, o.router
    n2 = o.ports["b"].network
    for ip in ("10.0.1.5", "10.0.2.1", "10.0.2.0", "fd00:1::5"):
        with pytest.raises(ModelError) as e:
            nb.learn(r.id, n2, ip, OTHER_MAC, 1.0)
        assert e.value.loc == ("ip",)
    with pytest.raises(ModelError) as e:
        nb.learn("nope", n2, "10.0.2.5", OTHER_MAC, 1.0)
    assert e.value.loc == ("router",)
    with pytest.raises(ModelError) as e:
        nb.learn(r.id, n2, "10.0.2.5", "01:00:00:00:00:01", 1.0)
    assert e.value.loc == ("mac",)
    assert o.neighbours() == []
    n = nb.learn(r.id, n2, "10.0.2.5", OTHER_MAC, 1.0)
    assert n.id == neighbour_id(r.id, n2, "10.0.2.5")


def test_a_binding_half_its_age_old_is_asked_for_again_and_its_answer_refreshes_it() -> None:
    o = Offline(age=300)
    learn = o.cookie(Learn, 3)
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.50"))
    assert o.nbs.probes(o.ctl.nb.state()) == []
    o.clock.t += 160
    ((where, frame, actions),) = o.nbs.probes(o.ctl.nb.state())
    (hv1,) = o.ctl.nb.state().all("chassis")
    assert where == [hv1.id]
    f = Ether(frame)
    assert (f.src, f[ARP].op, f[ARP].psrc, f[ARP].pdst) == (o.gw["s2"], 1, "10.0.2.1", "10.0.2.50")
    assert any(isinstance(a, Resubmit) for a in actions)
    o.handle(learn, arp_from(OTHER_MAC, "10.0.2.50"))  # the answer
    (n,) = o.neighbours()
    assert n.seen_at == o.clock.t and o.nbs.probes(o.ctl.nb.state()) == []
    o.clock.t += 301  # unanswered past the age: no probe, aged out
    assert o.nbs.probes(o.ctl.nb.state()) == [] and o.nbs.age_out() == 1
