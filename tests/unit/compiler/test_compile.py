"""Compiled flows, run by the vnet switch's own pipeline on in-memory ports."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from vnet.compiler import Compiler, StageError, check, localize, table
from vnet.controller.northbound import Northbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.model import Port
from vnet.pipeline.flow import Flow, FlowMod, FlowModCommand
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
    assert a.compiler.recompiled == 2  # the port, and its network's flood flows


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
