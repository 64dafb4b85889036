"""Compiled flows, run by the vnet switch's own pipeline on in-memory ports."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import replace
from socket import inet_pton
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.utils6 import in6_getnsmac

from vnet.compiler import Compiler, Memo, Stage, StageError, check, localize, logical, stages, table
from vnet.compiler.stages import NEXT
from vnet.controller.northbound import Northbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.model import Port
from vnet.pipeline.actions import Action, Ct, Resubmit
from vnet.pipeline.flow import Flow, FlowMod, FlowModCommand, Instructions
from vnet.pipeline.match import Match
from vnet.pipeline.ofctl import format_flow
from vnet.store import SqliteStore

TWO_TENANTS: dict[str, Any] = {
    "tenants": [{"name": "blue"}, {"name": "red"}],
    "chassis": [{"name": "hv1"}],
    "networks": [{"name": "net", "tenant": t} for t in ("blue", "red")],
    "subnets": [
        {"name": "s", "tenant": t, "network": "net", "cidr": "10.0.0.0/24"} for t in ("blue", "red")
    ],
    "ports": [
        {
            "name": f"{t}{i}",
            "tenant": t,
            "network": "net",
            "chassis": "hv1",
            "fixed_ips": [{"ip": f"10.0.0.{10 + i}"}],
        }
        for t in ("blue", "red")
        for i in (1, 2)
    ],
}


class Lab:
    """The model compiled, localized and installed on a switch with memory ports."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.nb = Northbound(SqliteStore())
        self.nb.apply(doc)
        self.sw = Switch("hv1", fail_mode="secure")
        self.devs: dict[str, MemoryDevice] = {}
        self.compiler = Compiler()
        for p in self.ports():
            dev = MemoryDevice(p.iface)
            self.devs[p.name] = dev
            self.sw.add_port(PortConfig(name=p.iface, kind="memory", port_security=False), dev)
        self.sync()

    def ports(self) -> list[Port]:
        return self.nb.list("port")  # type: ignore[return-value]

    def flows(self) -> list[Flow]:
        st = self.nb.state()
        ofports = {p.name: no for no, p in self.sw.ports.items()}
        return localize(self.compiler.compile(st), st, st.all("chassis")[0], ofports)

    def sync(self) -> None:
        self.sw.commit([FlowMod(FlowModCommand.DELETE, Flow(table=0xFF))])
        self.sw.commit([FlowMod(FlowModCommand.ADD, f) for f in self.flows()])

    def port(self, name: str) -> Port:
        return next(p for p in self.ports() if p.name == name)

    def send(self, name: str, frame: bytes) -> None:
        p = self.sw.port_by_name(self.port(name).iface)
        assert p is not None
        self.sw.receive_batch(p, [(b"", frame)], 1.0)

    def got(self, name: str) -> list[bytes]:
        return self.devs[name].frames()


def ping(lab: Lab, a: str, b: str) -> bytes:
    pa, pb = lab.port(a), lab.port(b)
    return bytes(
        Ether(src=pa.mac, dst=pb.mac) / IP(src=pa.ips[0], dst=pb.ips[0]) / ICMP()  # type: ignore[arg-type]
    )


def test_unicast_stays_inside_the_tenant() -> None:
    lab = Lab(TWO_TENANTS)
    lab.send("blue1", ping(lab, "blue1", "blue2"))
    assert len(lab.got("blue2")) == 1
    assert all(not lab.got(n) for n in ("blue1", "red1", "red2"))
    # red2 has the same IP as blue2; a frame from blue1 to red2's MAC goes nowhere
    pa, pr = lab.port("blue1"), lab.port("red2")
    lab.send("blue1", bytes(Ether(src=pa.mac, dst=pr.mac) / IP(src=pa.ips[0], dst=pr.ips[0])))  # type: ignore[arg-type]
    assert all(not lab.got(n) for n in ("blue2", "red1", "red2"))


def test_broadcast_reaches_only_the_network() -> None:
    lab = Lab(TWO_TENANTS)
    pa = lab.port("blue1")
    lab.send(
        "blue1",
        bytes(Ether(src=pa.mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=pa.ips[0], dst="10.0.0.255")),
    )  # type: ignore[arg-type]
    assert len(lab.got("blue2")) == 1
    assert all(not lab.got(n) for n in ("blue1", "red1", "red2"))


def test_arp_is_answered_by_the_switch() -> None:
    lab = Lab(TWO_TENANTS)
    pa, pb = lab.port("red1"), lab.port("red2")
    req = Ether(src=pa.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=pa.mac, psrc=pa.ips[0], pdst=pb.ips[0]
    )
    lab.send("red1", bytes(req))
    (reply,) = lab.got("red1")
    r = Ether(reply)
    assert r[ARP].op == 2 and r[ARP].hwsrc == pb.mac and r[ARP].psrc == pb.ips[0]
    assert r[ARP].hwdst == pa.mac and r[ARP].pdst == pa.ips[0] and r.dst == pa.mac
    assert all(not lab.got(n) for n in ("red2", "blue1", "blue2"))  # not flooded


DUAL_STACK: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [{"name": "hv1"}],
    "networks": [{"name": "net", "tenant": "t"}],
    "subnets": [{"name": "s6", "tenant": "t", "network": "net", "cidr": "fd00:10::/64"}],
    "ports": [
        {"name": n, "tenant": "t", "network": "net", "chassis": "hv1"} for n in ("a", "b", "c")
    ],
}


def solicit(lab: Lab, a: str, b: str, src: str | None = None, sll: bool = True) -> bytes:
    pa, pb = lab.port(a), lab.port(b)
    target = ipaddress.IPv6Address(pb.ips[0])
    snm = str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(target) & 0xFFFFFF)))  # fmt: skip
    pkt = (
        Ether(src=pa.mac, dst=in6_getnsmac(inet_pton(socket.AF_INET6, snm)))
        / IPv6(src=src if src is not None else pa.ips[0], dst=snm, hlim=255)
        / ICMPv6ND_NS(tgt=str(target))
    )
    if sll:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=pa.mac)
    return bytes(pkt)


def test_neighbour_solicitation_is_answered_by_the_switch() -> None:
    lab = Lab(DUAL_STACK)
    pa, pb = lab.port("a"), lab.port("b")
    lab.send("a", solicit(lab, "a", "b"))
    (reply,) = lab.got("a")
    assert all(not lab.got(n) for n in ("b", "c"))  # not flooded, not even to the owner
    r = Ether(reply)
    assert r.src == pb.mac and r.dst == pa.mac
    assert r[IPv6].src == pb.ips[0] and r[IPv6].dst == pa.ips[0] and r[IPv6].hlim == 255
    na = r[ICMPv6ND_NA]
    assert na.tgt == pb.ips[0] and (na.R, na.S, na.O) == (0, 1, 1)
    assert r[ICMPv6NDOptDstLLAddr].lladdr == pb.mac
    # scapy recomputes the ICMPv6 checksum from scratch: the switch's must equal it
    csum = na.cksum
    del na.cksum
    assert Ether(bytes(r))[ICMPv6ND_NA].cksum == csum


def test_solicitations_the_switch_leaves_to_the_owner() -> None:
    lab = Lab(DUAL_STACK)
    # duplicate address detection (from ::) and one without the sender's link-layer
    # address reach the owner only, unanswered by the switch
    lab.send("a", solicit(lab, "a", "b", src="::"))
    lab.send("a", solicit(lab, "a", "b", sll=False))
    assert len(lab.got("b")) == 2
    assert all(not lab.got(n) for n in ("a", "c"))


def test_port_security_drops_forged_mac_and_spoofed_arp() -> None:
    lab = Lab(TWO_TENANTS)
    pa, pb = lab.port("blue1"), lab.port("blue2")
    lab.send(
        "blue1",
        bytes(Ether(src="02:66:66:66:66:66", dst=pb.mac) / IP(src=pa.ips[0], dst=pb.ips[0])),
    )  # type: ignore[arg-type]
    lab.send("blue1", bytes(Ether(src=pa.mac, dst=pb.mac) / IP(src="10.0.0.99", dst=pb.ips[0])))  # type: ignore[arg-type]
    lab.send(
        "blue1",
        bytes(
            Ether(src=pa.mac, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=2, hwsrc=pa.mac, psrc=pb.ips[0], pdst=pb.ips[0])
        ),
    )  # type: ignore[arg-type]
    assert not lab.got("blue2")


def test_same_model_same_bytes_and_incremental() -> None:
    a, b = Lab(TWO_TENANTS), Lab(TWO_TENANTS)
    # ids, MACs differ between the two stores; within one, compiling twice is identical
    first = [format_flow(f) for f in a.flows()]
    assert first == [format_flow(f) for f in a.flows()]
    assert a.compiler.recompiled == 0
    assert len(first) == len(b.flows())
    a.nb.update("port", a.port("blue1").id, {"admin_up": False})
    a.flows()
    assert a.compiler.recompiled == 3  # the port, its DHCP punts, its network's flood flows


def test_localize_with_its_memo_equals_localize_afresh() -> None:
    lab = Lab(TWO_TENANTS)
    st = lab.nb.state()
    ch = st.all("chassis")[0]
    ofports = {p.name: no for no, p in lab.sw.ports.items()}
    memo: Memo = {}
    lflows = lab.compiler.compile(st)
    first = localize(lflows, st, ch, ofports, memo)
    assert first == localize(lflows, st, ch, ofports) and len(memo) == 4
    # a port moves to another OpenFlow port, another is deleted: the memo follows
    ofports[lab.port("blue1").iface] = 99
    lab.nb.delete("port", lab.port("red2").id)
    st = lab.nb.state()
    lflows = lab.compiler.compile(st)
    again = localize(lflows, st, ch, ofports, memo)
    assert again == localize(lflows, st, ch, ofports) and len(memo) == 3
    assert any("in_port=99" in format_flow(f) for f in again)
    assert [format_flow(f) for f in again] != [format_flow(f) for f in first]


def test_every_flow_names_its_origin_and_stage() -> None:
    lab = Lab(TWO_TENANTS)
    for f in lab.flows():
        check(f)
        assert f.cookie and " · " in f.origin


def test_a_flow_outside_its_stage_is_refused() -> None:
    bad = Flow(match=Match.of(in_port=1), table=table("ls_in_l2_lkup"))
    with pytest.raises(StageError):
        check(bad)
    jump = Flow(
        table=table("phy_in"), instructions=Flow().instructions.__class__(goto=table("phy_out"))
    )
    with pytest.raises(StageError):
        check(jump)


def test_check_follows_resubmits_to_table_0_and_ct_recirculation() -> None:
    def flow(at: str, *acts: Action) -> Flow:
        return Flow(table=table(at), instructions=Instructions(apply=acts))

    for bad in (
        flow("ls_in_l2_lkup", Resubmit(None, table("phy_in"))),  # table 0
        flow("ls_in_l2_lkup", Resubmit(5, None)),  # its own table, which it may not reach
        flow("ls_in_port_sec", Ct(table=table("phy_out"))),
    ):
        with pytest.raises(StageError, match="may not go to"):
            check(bad)
    check(flow("ls_in_port_sec", Ct(table=table("ls_in_dhcp"))))
    check(flow("ls_in_l2_lkup", Resubmit(None, table("ls_in_pre_acl"))))


def test_a_new_stage_is_one_declaration_and_one_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    # the declaration: a stage after ingress port security, continuing by default
    check_src = Stage(
        "ls_in_check_src", ("eth_src",), (NEXT,), "drop frames from a multicast source",
        default=NEXT,
    )  # fmt: skip
    ls = stages.SWITCH
    declared = replace(ls, ingress=(ls.ingress[0], check_src, *ls.ingress[1:]))
    open_ports = {**TWO_TENANTS, "ports": [{**p, "port_security": False} for p in TWO_TENANTS["ports"]]}  # fmt: skip
    monkeypatch.setattr(logical, "_NETWORK", list(logical._NETWORK))
    with stages.declared(declared):
        # the builder: one flow per network
        @logical.network_stage("ls_in_check_src")
        def multicast_source(e: Any, net: Any, ports: Any) -> None:
            e(100, "multicast source: drop", {"eth_src": (1 << 40, 1 << 40)})

        lab = Lab(open_ports)
        # port security's flows reach the new stage with no edit: they said `next`
        port_sec = [f for f in lab.flows() if f.table == table("ls_in_port_sec")]
        gotos = {f.instructions.goto for f in port_sec} - {None}
        assert gotos == {table("ls_in_check_src")}
        pa, pb = lab.port("blue1"), lab.port("blue2")
        lab.send("blue1", ping(lab, "blue1", "blue2"))
        forged = Ether(src="03:00:00:00:00:01", dst=pb.mac) / IP(src=pa.ips[0], dst=pb.ips[0])
        lab.send("blue1", bytes(forged))  # type: ignore[arg-type]
        assert [Ether(f).src for f in lab.got("blue2")] == [pa.mac]
    # outside the declaration the pipeline is as it was
    with pytest.raises(StageError):
        table("ls_in_check_src")


def test_the_chassis_stages_take_no_logical_builder() -> None:
    for name in ("phy_in", "phy_out"):
        with pytest.raises(StageError, match="chassis"):
            logical.port_stage(name)
        with pytest.raises(StageError, match="chassis"):
            logical.network_stage(name)
