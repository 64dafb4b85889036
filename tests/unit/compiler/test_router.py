"""The logical router, compiled and run: real vnet switches, memory ports, a simulated underlay.

Two networks, each with an IPv4 and an IPv6 subnet, behind one router; a port
in each, on one chassis or on two.  The model objects carry what admission
fills in (MACs, keys), so the compiler is tested on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from socket import AF_INET6, inet_pton
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.utils6 import in6_getnsmac

from vnet.compiler import Compiler, local_groups, localize, neighbour, router
from vnet.compiler.stages import stage_of
from vnet.controller.northbound import Northbound
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice, MemoryTunnel, split_outer
from vnet.datapath.switch import PacketIn
from vnet.ids import datapath_id
from vnet.lab.underlay import carry
from vnet.model.objects import (
    ORDER,
    AddressPair,
    Chassis,
    FixedIP,
    Network,
    Port,
    Route,
    Router,
    RouterInterface,
    Subnet,
    Tenant,
    tunnel_iface,
)
from vnet.model.rules import State
from vnet.ofp.convert import (
    DP,
    bucket_to_ofp,
    check_flow,
    flow_from_ofp,
    flow_mod_to_ofp,
    group_from_ofp,
)
from vnet.ofp.decode import decode_request
from vnet.packet import flowkey as fk
from vnet.packet.addr import ip4_int
from vnet.pipeline.flow import Flow, FlowMod, FlowModCommand
from vnet.pipeline.groups import GroupMod, GroupModCommand
from vnet.store import SqliteStore
from vnet.store.base import Op

GW_MAC = {"s1": "0a:00:00:00:01:04", "s1v6": "0a:00:00:00:01:06",
          "s2": "0a:00:00:00:02:04", "s2v6": "0a:00:00:00:02:06"}  # fmt: skip
MAC = {"a": "02:00:00:00:01:0a", "b": "02:00:00:00:02:0b", "c": "02:00:00:00:02:0c"}
IP4 = {"a": "10.0.1.10", "b": "10.0.2.11", "c": "10.0.2.12"}
IP6 = {"a": "fd00:1::10", "b": "fd00:2::11", "c": "fd00:2::12"}
NET = {"a": "n1", "b": "n2", "c": "n2"}
SUB = {"n1": ("s1", "s1v6"), "n2": ("s2", "s2v6")}


def model(
    chassis: dict[str, str],
    routes: list[Route] | None = None,
    pairs: dict[str, list[AddressPair]] | None = None,
    admin_up: bool = True,
) -> State:
    """Two dual-stack networks behind router r; `chassis`: port name -> chassis name."""
    objs: list[Any] = [Tenant(id="t", name="t")]
    for i, name in enumerate(sorted(set(chassis.values())), 1):
        objs.append(Chassis(id=name, name=name, underlay=f"192.0.2.{i}", encap="geneve"))
    for n, vni in (("n1", 11), ("n2", 22)):
        objs.append(Network(id=n, name=n, tenant="t", segment_id=vni))
    third = {"n1": 1, "n2": 2}
    for n, (s4, s6) in SUB.items():
        objs.append(Subnet(id=s4, name=s4, network=n, tenant="t", cidr=f"10.0.{third[n]}.0/24"))
        objs.append(Subnet(id=s6, name=s6, network=n, tenant="t", cidr=f"fd00:{third[n]}::/64"))
    for k, (name, ch) in enumerate(sorted(chassis.items()), 1):
        s4, s6 = SUB[NET[name]]
        ips = [FixedIP(subnet=s4, ip=IP4[name]), FixedIP(subnet=s6, ip=IP6[name])]
        objs.append(Port(id=name, name=name, network=NET[name], tenant="t", mac=MAC[name],
                         fixed_ips=ips, chassis=ch, tunnel_key=k,
                         allowed_address_pairs=(pairs or {}).get(name, [])))  # fmt: skip
    # admission numbers router ports from the top of each network's keys: both
    # interfaces on n1 and both on n2 take the same two keys
    keys = {"s1": 32767, "s1v6": 32766, "s2": 32767, "s2v6": 32766}
    itfs = [RouterInterface(subnet=s, mac=GW_MAC[s], tunnel_key=keys[s]) for s in GW_MAC]
    objs.append(Router(id="r", name="r", tenant="t", tunnel_key=5, interfaces=itfs,
                       routes=routes or [], admin_up=admin_up))  # fmt: skip
    return State.of(objs)


class Rig:
    """Each chassis' switch programmed with its localized flows and groups; memory
    ports for the workloads, memory tunnels joined by the simulated underlay."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.lflows = Compiler().compile(state)
        self.packet_ins: list[PacketIn] = []
        self.switches: dict[str, Switch] = {}
        self.devices: dict[str, MemoryDevice] = {}
        self.where: dict[str, Switch] = {}
        self.tunnels: dict[str, MemoryTunnel] = {}
        self.underlay: dict[int, Switch] = {}
        self.sent: list[tuple[str, bytes]] = []  # (chassis, outer packet) the underlay carried
        for ch in state.all("chassis"):
            sw = Switch(ch.name, fail_mode="secure")
            sw.on_packet_in = self.packet_ins.append
            sw.controller_connected(1)
            name = tunnel_iface(ch.encap)
            tun = MemoryTunnel(name, ch.underlay_mtu)
            sw.add_port(PortConfig(name, kind=ch.encap, local_ip=ip4_int(ch.underlay), port_security=False), tun)  # fmt: skip
            self.switches[ch.id], self.tunnels[ch.id] = sw, tun
            self.underlay[ip4_int(ch.underlay)] = sw
        for p in state.all("port"):
            sw = self.switches[p.chassis]
            dev = MemoryDevice(p.iface)
            sw.add_port(PortConfig(p.iface, kind="memory", port_security=False), dev)
            self.devices[p.name], self.where[p.name] = dev, sw
        for ch in state.all("chassis"):
            sw = self.switches[ch.id]
            ofports = {p.name: no for no, p in sw.ports.items()}
            groups = local_groups(self.lflows, state, ch, ofports)
            flows = localize(self.lflows, state, ch, ofports)
            sw.commit([GroupMod(GroupModCommand.ADD, g) for g in groups])
            sw.commit([FlowMod(FlowModCommand.ADD, f) for f in flows])

    def send(self, name: str, frame: bytes) -> None:
        sw = self.where[name]
        port = sw.port_by_name(next(p.iface for p in self.state.all("port") if p.name == name))
        assert port is not None
        sw.receive_batch(port, [(b"", frame)], 1.0)
        for _ in range(10):
            for cid, tun in self.tunnels.items():
                self.sent += [(cid, pkt) for _, pkt in tun.sent]
            if not carry(self.switches.values(), self.underlay, 1.0):
                break

    def got(self, name: str) -> list[Ether]:
        return [Ether(f) for f in self.devices[name].frames()]

    def flows(self, chassis: str) -> list[Flow]:
        ch = self.state.get("chassis", chassis)
        sw = self.switches[chassis]
        return localize(self.lflows, self.state, ch, {p.name: no for no, p in sw.ports.items()})


def ping4(src: str, dst_ip: str, ttl: int = 64, gw: str = "s1") -> bytes:
    e = Ether(src=MAC[src], dst=GW_MAC[gw])
    return bytes(e / IP(src=IP4[src], dst=dst_ip, ttl=ttl) / ICMP(id=7, seq=1) / b"ping")


def ping6(src: str, dst_ip: str, hlim: int = 64, gw: str = "s1v6") -> bytes:
    e = Ether(src=MAC[src], dst=GW_MAC[gw])
    return bytes(e / IPv6(src=IP6[src], dst=dst_ip, hlim=hlim) / ICMPv6EchoRequest(id=7, seq=1))


def iface(name: str) -> str:
    return Port(id=name, name=name, network="").iface


ONE = {"a": "hv1", "b": "hv1"}
TWO = {"a": "hv1", "b": "hv2"}


@pytest.mark.parametrize("where", [ONE, TWO], ids=["one chassis", "two chassis"])
def test_an_ipv4_echo_is_routed_both_ways(where: dict[str, str]) -> None:
    rig = Rig(model(where))
    rig.send("a", ping4("a", IP4["b"]))
    (f,) = rig.got("b")
    assert f.src == GW_MAC["s2"] and f.dst == MAC["b"]
    assert f[IP].src == IP4["a"] and f[IP].dst == IP4["b"] and f[IP].ttl == 63
    assert f[ICMP].type == 8 and bytes(f[ICMP].payload) == b"ping"
    assert IP(bytes(f[IP])).chksum == f[IP].chksum  # the checksum follows the TTL
    assert not rig.got("a")
    back = Ether(src=MAC["b"], dst=GW_MAC["s2"]) / IP(src=IP4["b"], dst=IP4["a"], ttl=64) / ICMP(type=0, id=7, seq=1)  # fmt: skip
    rig.send("b", bytes(back))
    (g,) = rig.got("a")
    assert g.src == GW_MAC["s1"] and g.dst == MAC["a"] and g[IP].ttl == 63 and g[ICMP].type == 0


@pytest.mark.parametrize("where", [ONE, TWO], ids=["one chassis", "two chassis"])
def test_an_ipv6_echo_is_routed_with_the_hop_limit_decremented(where: dict[str, str]) -> None:
    rig = Rig(model(where))
    rig.send("a", ping6("a", IP6["b"]))
    (f,) = rig.got("b")
    assert f.src == GW_MAC["s2v6"] and f.dst == MAC["b"]
    assert f[IPv6].src == IP6["a"] and f[IPv6].hlim == 63 and ICMPv6EchoRequest in f
    back = Ether(src=MAC["b"], dst=GW_MAC["s2v6"]) / IPv6(src=IP6["b"], dst=IP6["a"]) / ICMPv6EchoReply(id=7, seq=1)  # fmt: skip
    rig.send("b", bytes(back))
    (g,) = rig.got("a")
    assert g.src == GW_MAC["s1v6"] and g[IPv6].hlim == 63 and ICMPv6EchoReply in g


def test_across_chassis_the_frame_leaves_the_first_hop_in_the_destination_networks_tunnel() -> None:
    rig = Rig(model(TWO))
    rig.send("a", ping4("a", IP4["b"]))
    outer = [split_outer(p) for ch, p in rig.sent if ch == "hv1"]
    assert len(outer) == 1 and outer[0] is not None
    kind, _, payload = outer[0]
    assert kind == "geneve"
    vni = int.from_bytes(payload[4:7], "big")  # Geneve: the VNI after 4 bytes of header
    assert vni == 22  # n2's, the destination network: routed before the tunnel
    inner = Ether(payload[8 + 8 :])  # the header and vnet's one 8-byte option
    assert inner.src == GW_MAC["s2"] and inner.dst == MAC["b"] and inner[IP].ttl == 63
    assert len(rig.got("b")) == 1


def test_the_gateways_arp_and_neighbour_solicitation_are_answered() -> None:
    rig = Rig(model(ONE))
    req = Ether(src=MAC["a"], dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC["a"], psrc=IP4["a"], pdst="10.0.1.1")  # fmt: skip
    rig.send("a", bytes(req))
    (r,) = rig.got("a")
    assert r[ARP].op == 2 and r[ARP].hwsrc == GW_MAC["s1"] and r[ARP].psrc == "10.0.1.1"
    assert r.dst == MAC["a"] and r[ARP].pdst == IP4["a"]
    ns = (Ether(src=MAC["a"], dst=in6_getnsmac(inet_pton(AF_INET6, "ff02::1:ff00:1")))
          / IPv6(src=IP6["a"], dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="fd00:1::1")
          / ICMPv6NDOptSrcLLAddr(lladdr=MAC["a"]))  # fmt: skip
    rig.send("a", bytes(ns))
    (na,) = rig.got("a")
    assert ICMPv6ND_NA in na and na[ICMPv6ND_NA].tgt == "fd00:1::1"
    assert na[ICMPv6NDOptDstLLAddr].lladdr == GW_MAC["s1v6"] and na.src == GW_MAC["s1v6"]
    assert not rig.got("b")


@pytest.mark.parametrize("fam", [4, 6])
def test_a_ping_to_the_routers_address_is_answered(fam: int) -> None:
    rig = Rig(model(TWO))
    if fam == 4:
        rig.send("a", ping4("a", "10.0.1.1"))
        rig.send("a", ping4("a", "10.0.2.1"))  # its address on the other network, too
    else:
        rig.send("a", ping6("a", "fd00:1::1"))
        rig.send("a", ping6("a", "fd00:2::1"))
    replies = rig.got("a")
    assert len(replies) == 2
    for r, addr in zip(replies, ("10.0.1.1", "10.0.2.1") if fam == 4 else ("fd00:1::1", "fd00:2::1"), strict=True):  # fmt: skip
        assert r.src == GW_MAC["s1" if fam == 4 else "s1v6"] and r.dst == MAC["a"]
        if fam == 4:
            assert r[IP].src == addr and r[IP].dst == IP4["a"] and r[ICMP].type == 0
            assert r[ICMP].id == 7 and bytes(r[ICMP].payload) == b"ping"
            assert IP(bytes(r[IP])).chksum == r[IP].chksum
            again = IP(bytes(r[IP]))
            del again[ICMP].chksum
            assert IP(bytes(again))[ICMP].chksum == r[ICMP].chksum
        else:
            assert r[IPv6].src == addr and r[IPv6].dst == IP6["a"] and ICMPv6EchoReply in r
            again = IPv6(bytes(r[IPv6]))
            del again[ICMPv6EchoReply].cksum
            assert IPv6(bytes(again))[ICMPv6EchoReply].cksum == r[ICMPv6EchoReply].cksum
    assert not rig.got("b") and not rig.packet_ins


def _punt(rig: Rig, p: PacketIn) -> router.Punt:
    meaning = router.punts(rig.lflows).get(p.cookie)
    assert meaning is not None, f"cookie {p.cookie:#x} from {stage_of(p.table_id)} means nothing"
    return meaning


@pytest.mark.parametrize("fam", [4, 6])
def test_ttl_one_goes_to_the_controller_with_the_router_punt(fam: int) -> None:
    rig = Rig(model(TWO))
    rig.send("a", ping4("a", IP4["b"], ttl=1) if fam == 4 else ping6("a", IP6["b"], hlim=1))
    assert not rig.got("b")
    (p,) = rig.packet_ins
    m = _punt(rig, p)
    assert m.reason == "ttl-expired" and m.router == "r" and m.family == fam
    assert m.icmp == ((11, 0) if fam == 4 else (3, 0))
    assert (m.subnet, m.network, m.interface) == (
        ("s1", "n1", 1) if fam == 4 else ("s1v6", "n1", 2)
    )
    assert m.address == ("10.0.1.1" if fam == 4 else "fd00:1::1")
    assert m.mac == GW_MAC[m.subnet]
    sw = rig.where["a"]
    assert p.key[fk.IN_PORT] == next(no for no, q in sw.ports.items() if q.name == iface("a"))
    sent = Ether(p.frame)
    assert sent.src == MAC["a"]  # the packet as it came, to answer about


def test_a_ping_to_the_router_with_ttl_one_is_still_answered() -> None:
    rig = Rig(model(ONE))
    rig.send("a", ping4("a", "10.0.1.1", ttl=1))
    (r,) = rig.got("a")
    assert r[ICMP].type == 0 and not rig.packet_ins


@pytest.mark.parametrize("fam", [4, 6])
def test_no_route_goes_to_the_controller(fam: int) -> None:
    rig = Rig(model(ONE))
    rig.send("a", ping4("a", "192.168.7.7") if fam == 4 else ping6("a", "fd00:99::7"))
    assert not rig.got("b")
    (p,) = rig.packet_ins
    m = _punt(rig, p)
    assert m.reason == "no-route" and m.icmp == ((3, 0) if fam == 4 else (1, 0))
    assert m.address == ("10.0.1.1" if fam == 4 else "fd00:1::1")


def test_a_static_route_sends_to_its_next_hops_mac() -> None:
    rig = Rig(model(TWO, routes=[Route(cidr="172.16.0.0/16", nexthop=IP4["b"])]))
    rig.send("a", ping4("a", "172.16.3.4"))
    (f,) = rig.got("b")
    assert f.dst == MAC["b"] and f.src == GW_MAC["s2"] and f[IP].dst == "172.16.3.4"
    assert f[IP].ttl == 63


def test_an_address_pair_is_resolved_to_its_mac() -> None:
    vip = AddressPair(ip="10.0.2.100", mac="02:00:00:00:02:99")
    rig = Rig(model(ONE, pairs={"b": [vip]}))
    rig.send("a", ping4("a", "10.0.2.100"))
    (f,) = rig.got("b")
    assert f.dst == "02:00:00:00:02:99" and f[IP].dst == "10.0.2.100"


def test_an_unknown_next_hop_goes_to_the_controller_to_be_resolved() -> None:
    rig = Rig(model(ONE))
    rig.send("a", ping4("a", "10.0.2.77"))  # on n2's subnet, but no port has it
    assert not rig.got("b")
    (pi,) = rig.packet_ins
    p = neighbour.punts(rig.lflows)[pi.cookie]
    assert (p.reason, p.router, p.interface, p.network, p.nexthop) == (
        "resolve",
        "r",
        3,
        "n2",
        None,
    )
    assert (p.mac, p.address, p.port_key) == (GW_MAC["s2"], "10.0.2.1", 32767)


def test_ecmp_spreads_connections_over_the_next_hops_and_keeps_each_on_one() -> None:
    where = {"a": "hv1", "b": "hv1", "c": "hv1"}
    routes = [Route(cidr="172.16.0.0/16", nexthop=IP4["b"]), Route(cidr="172.16.0.0/16", nexthop=IP4["c"])]  # fmt: skip
    rig = Rig(model(where, routes=routes))
    sw = rig.switches["hv1"]
    ofports = {p.name: no for no, p in sw.ports.items()}
    (g,) = local_groups(rig.lflows, rig.state, rig.state.get("chassis", "hv1"), ofports)
    assert list(sw.pipeline.groups) == [g.group_id]
    assert len(g.buckets) == 2
    seen: dict[int, str] = {}
    for sport in range(40):
        for _ in range(2):  # the same connection twice: the same next hop
            e = Ether(src=MAC["a"], dst=GW_MAC["s1"]) / IP(src=IP4["a"], dst="172.16.0.9") / UDP(sport=1000 + sport, dport=53)  # fmt: skip
            rig.send("a", bytes(e))
            got = [(n, f) for n in ("b", "c") for f in rig.got(n)]
            assert len(got) == 1
            name, f = got[0]
            assert f.dst == MAC[name] and f[IP].ttl == 63
            assert seen.setdefault(sport, name) == name
    assert set(seen.values()) == {"b", "c"}


def test_a_router_down_routes_nothing_and_answers_nothing() -> None:
    rig = Rig(model(ONE, admin_up=False))
    rig.send("a", ping4("a", IP4["b"]))
    rig.send("a", ping4("a", "10.0.1.1"))
    assert not rig.got("b") and not rig.got("a") and not rig.packet_ins


def test_a_chassis_gets_a_router_with_a_port_on_one_of_its_networks_and_all_its_networks() -> None:
    st = model({"a": "hv1", "b": "hv2"}, routes=[
        Route(cidr="172.16.0.0/16", nexthop=IP4["b"]), Route(cidr="172.16.0.0/16", nexthop=IP4["a"])])  # fmt: skip
    lflows = Compiler().compile(st)
    other = Network(id="n3", name="n3", tenant="t", segment_id=33)
    c = Port(id="c", name="c", network="n3", tenant="t", mac=MAC["c"], chassis="hv1", tunnel_key=1)
    st = State.of(
        [*(o for k in st.objects for o in st.objects[k].values() if o.id != "a"), other, c]
    )
    lflows = Compiler().compile(st)
    ofports = {iface("c"): 1, "vtep-geneve": 9}
    hv1 = localize(lflows, st, st.get("chassis", "hv1"), ofports)
    assert hv1 and all("router r" not in f.origin for f in hv1)
    assert local_groups(lflows, st, st.get("chassis", "hv1"), ofports) == []
    ofports = {iface("b"): 1, "vtep-geneve": 9}
    hv2 = localize(lflows, st, st.get("chassis", "hv2"), ofports)
    assert any("router r" in f.origin and stage_of(f.table) == "lr_in_ip_routing" for f in hv2)
    # and n1's flows with it, the router's other network, though no port of n1 is here
    assert any(f.origin.startswith("network n1") for f in hv2)
    assert len(local_groups(lflows, st, st.get("chassis", "hv2"), ofports)) == 1


def test_the_router_flows_and_groups_cross_the_openflow_codec_unchanged() -> None:
    """What an Open vSwitch chassis is sent: the same flows and groups, byte for byte
    through os-ken and back, and none its switch would refuse as inconsistent."""
    routes = [Route(cidr="172.16.0.0/16", nexthop=IP4["b"]), Route(cidr="172.16.0.0/16", nexthop=IP4["a"])]  # fmt: skip
    st = model(TWO, routes=routes)
    lflows = Compiler().compile(st)
    ofports = {iface("a"): 1, "vtep-geneve": 9}
    ch = st.get("chassis", "hv1")
    mine = [f for f in localize(lflows, st, ch, ofports) if "router r" in f.origin]
    assert {stage_of(f.table) for f in mine} >= {"lr_in_admission", "lr_in_ip_input", "lr_in_ip_routing",
                                                  "lr_in_arp_resolve", "lr_out_delivery", "phy_out"}  # fmt: skip
    for f in mine:
        msg = flow_mod_to_ofp(f)
        msg.serialize()
        wire = bytes(msg.buf)
        back = flow_from_ofp(parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire))
        check_flow(back, msg)
        assert replace(back, origin=f.origin) == f, f.origin
    (g,) = local_groups(lflows, st, ch, ofports)
    gm = parser.OFPGroupMod(DP, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, g.group_id,
                            [bucket_to_ofp(b) for b in g.buckets])  # fmt: skip
    gm.serialize()
    wire = bytes(gm.buf)
    back_g = decode_request(ofp.OFPT_GROUP_MOD, wire)
    assert group_from_ofp(back_g.group_id, back_g.type, back_g.buckets) == g


def test_the_controller_installs_a_routers_ecmp_group_with_its_flows() -> None:
    routes = [Route(cidr="172.16.0.0/16", nexthop=IP4["b"]), Route(cidr="172.16.0.0/16", nexthop=IP4["c"])]  # fmt: skip
    st = model({"a": "hv1", "b": "hv1", "c": "hv1"}, routes=routes)
    store = SqliteStore()
    objs = [o for k in ORDER for o in st.all(k)]
    hv1 = {"datapath_id": f"{datapath_id('hv1'):016x}"}
    store.commit([Op(o.kind, o.id, {**o.spec(), **(hv1 if o.kind == "chassis" else {})}) for o in objs])  # fmt: skip
    sw = Switch("hv1", fail_mode="secure")
    devs = {}
    for p in st.all("port"):
        devs[p.name] = MemoryDevice(p.iface)
        sw.add_port(PortConfig(p.iface, kind="memory", port_security=False), devs[p.name])

    async def main() -> None:
        ctl = Controller(store)
        await ctl.attach(LocalSouthbound(sw))

    asyncio.run(main())
    assert list(sw.pipeline.groups) == [router.group_id(st.get("router", "r"), 1)]
    port = sw.port_by_name(iface("a"))
    assert port is not None
    frame = Ether(src=MAC["a"], dst=GW_MAC["s1"]) / IP(src=IP4["a"], dst="172.16.0.9") / UDP(sport=9, dport=53)  # fmt: skip
    sw.receive_batch(port, [(b"", bytes(frame))], 1.0)
    assert len(devs["b"].frames()) + len(devs["c"].frames()) == 1


def test_a_router_admitted_through_the_northbound_routes_across_chassis() -> None:
    nb = Northbound(SqliteStore())
    subnets = [("s1", "n1", "10.0.1.0/24"), ("s1v6", "n1", "fd00:1::/64"),
               ("s2", "n2", "10.0.2.0/24"), ("s2v6", "n2", "fd00:2::/64")]  # fmt: skip
    nb.apply({
        "tenants": [{"name": "t"}],
        "chassis": [{"name": "hv1", "underlay": "192.0.2.1"}, {"name": "hv2", "underlay": "192.0.2.2"}],
        "networks": [{"name": "n1", "tenant": "t"}, {"name": "n2", "tenant": "t"}],
        "subnets": [{"name": s, "tenant": "t", "network": n, "cidr": c} for s, n, c in subnets],
        "ports": [{"name": "a", "tenant": "t", "network": "n1", "chassis": "hv1"},
                  {"name": "b", "tenant": "t", "network": "n2", "chassis": "hv2"}],
        "routers": [{"name": "r", "tenant": "t", "interfaces": [{"subnet": s} for s, _, _ in subnets]}],
    })  # fmt: skip
    st = nb.state()
    rig = Rig(st)
    a, b = (next(p for p in st.all("port") if p.name == n) for n in ("a", "b"))
    gw = {st.get("subnet", i.subnet).name: i.mac for i in st.all("router")[0].interfaces}
    rig.send("a", bytes(Ether(src=a.mac, dst=gw["s1"]) / IP(src=a.ips[0], dst=b.ips[0]) / ICMP()))
    rig.send("a", bytes(Ether(src=a.mac, dst=gw["s1v6"]) / IPv6(src=a.ips[1], dst=b.ips[1]) / ICMPv6EchoRequest()))  # fmt: skip
    got = rig.got("b")
    assert [(f.src, f.dst) for f in got] == [(gw["s2"], b.mac), (gw["s2v6"], b.mac)]
    assert got[0][IP].ttl == 63 and got[1][IPv6].hlim == 63
