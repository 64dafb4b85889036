"""Cutting what a model change denies: the connection's entries go, the others stay.

The examples' micro-segmentation model on a vnet switch in this process:
client -> web tcp/80 and web -> db tcp/5432 are allowed and established;
then web's ingress rule for tcp/80 goes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from vnet.controller.cut import Cutter, Entry, parse_entry, port_zones, survey, trackers
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.store import SqliteStore

EXAMPLE = Path(__file__).parents[3] / "examples" / "microseg.yaml"
DOC: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())


def closed_to_web(doc: dict[str, Any]) -> dict[str, Any]:
    """The model without web's ingress rule for tcp/80."""
    out = copy.deepcopy(doc)
    web = next(g for g in out["security_groups"] if g["name"] == "web")
    web["rules"] = [r for r in web["rules"] if r.get("protocol") != "tcp"]
    return out


# -- reading dump-conntrack lines ----------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "want"),
    [
        (
            "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),reply=(src=10.0.0.2,"
            "dst=10.0.0.1,sport=80,dport=40000),zone=7,timeout=431999,protoinfo=(state=ESTABLISHED)",
            Entry(7, "IPv4", 6, "10.0.0.1", "10.0.0.2", 40000, 80),
        ),
        (
            "icmp,orig=(src=10.0.0.1,dst=10.0.0.2,id=9,type=8,code=0),reply=(src=10.0.0.2,"
            "dst=10.0.0.1,id=9,type=0,code=0),zone=3",
            Entry(3, "IPv4", 1, "10.0.0.1", "10.0.0.2", 9, 8, 0),
        ),
        (
            "udp6,orig=(src=fd00:0::1,dst=fd00::2,sport=5000,dport=53),reply=(src=fd00::2,"
            "dst=fd00::1,sport=53,dport=5000)",
            Entry(0, "IPv6", 17, "fd00::1", "fd00::2", 5000, 53),
        ),
    ],
)
def test_an_entry_is_read_as_vnet_and_open_vswitch_print_it(line: str, want: Entry) -> None:
    got = parse_entry(line)
    assert got is not None
    assert (got.zone, got.ethertype, got.proto, got.src, got.dst, got.sport, got.dport) == (
        want.zone, want.ethertype, want.proto, want.src, want.dst, want.sport, want.dport,
    )  # fmt: skip


def test_what_is_no_entry_is_none() -> None:
    assert parse_entry("") is None
    assert parse_entry("tcp,orig=(src=nowhere,dst=10.0.0.2,sport=1,dport=2)") is None
    assert parse_entry("gre,orig=(src=10.0.0.1,dst=10.0.0.2)") is None


def test_the_flush_tuple_is_dpctls_syntax() -> None:
    e = Entry(7, "IPv4", 6, "10.0.0.1", "10.0.0.2", 40000, 80)
    assert e.tuple_text() == (
        "ct_nw_src=10.0.0.1,ct_nw_dst=10.0.0.2,ct_nw_proto=6,ct_tp_src=40000,ct_tp_dst=80"
    )
    i = Entry(3, "IPv6", 58, "fd00::1", "fd00::2", 9, 128, 0)
    assert i.tuple_text() == (
        "ct_ipv6_src=fd00::1,ct_ipv6_dst=fd00::2,ct_nw_proto=58,icmp_id=9,icmp_type=128,icmp_code=0"
    )


# -- a switch with established connections -------------------------------------------------
Run = Callable[[Controller, Switch], Awaitable[None]]


def rig(test: Run) -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(DOC)
        sw = Switch("hv1", fail_mode="secure")
        for o in ctl.nb.list("port"):
            sw.add_port(PortConfig(o.iface, kind="memory"), MemoryDevice(o.iface))  # type: ignore[attr-defined]
        await ctl.start()
        try:
            await ctl.attach(LocalSouthbound(sw))
            await ctl.wait_synced()
            await test(ctl, sw)
        finally:
            await ctl.stop()

    asyncio.run(main())


class Conn:
    """One TCP connection between two ports of the switch, sequence numbers kept."""

    def __init__(self, ctl: Controller, sw: Switch, a: str, b: str, dport: int) -> None:
        ports = {p.name: p for p in ctl.nb.list("port")}
        self.sw, self.a, self.b, self.dport = sw, ports[a], ports[b], dport
        self.seq = {0: 1000, 1: 5000}

    def send(self, d: int, flags: str, data: bytes = b"") -> bool:
        """A segment from a (0) or b (1); whether it reached the other end."""
        src, dst = (self.a, self.b) if d == 0 else (self.b, self.a)
        sp, dp = (40000, self.dport) if d == 0 else (self.dport, 40000)
        ack = self.seq[1 - d] if "A" in flags else 0
        frame = bytes(
            Ether(src=src.mac, dst=dst.mac)
            / IP(src=src.ips[0], dst=dst.ips[0])
            / TCP(sport=sp, dport=dp, flags=flags, seq=self.seq[d], ack=ack, window=65535)
            / data
        )
        self.seq[d] += len(data) + ("S" in flags)
        into, out = self.sw.port_by_name(src.iface), self.sw.port_by_name(dst.iface)
        assert into is not None and out is not None
        out.device.frames()  # type: ignore[attr-defined]
        self.sw.receive(into, b"", frame)
        return any(TCP in Ether(f) for f in out.device.frames())  # type: ignore[attr-defined]

    def open(self) -> None:
        assert self.send(0, "S") and self.send(1, "SA") and self.send(0, "A")
        assert self.send(0, "PA", b"hello") and self.send(1, "PA", b"hi")


def test_a_change_that_denies_a_connection_cuts_it_and_only_it() -> None:
    async def run(ctl: Controller, sw: Switch) -> None:
        web, db = Conn(ctl, sw, "client", "web", 80), Conn(ctl, sw, "web", "db", 5432)
        web.open()
        db.open()
        zones = {p.name: z for z, p in port_zones(ctl.nb.state(), ctl.nb.get("chassis", "hv1"), sw_ports(sw)).items()}  # type: ignore[arg-type]  # fmt: skip
        assert {c.zone for c in sw.conntrack.conns()} == {zones["client"], zones["web"], zones["db"]}  # fmt: skip
        assert len(list(sw.conntrack.conns())) == 4  # each connection in both ports' zones
        cutter = Cutter()
        await cutter.model_changed(ctl.nb.state(), ctl.sessions.values())
        ctl.nb.apply(closed_to_web(DOC))
        await ctl.wait_synced()
        report = await cutter.model_changed(ctl.nb.state(), ctl.sessions.values())
        assert report is not None and report.connections == 1 and report.flushed == 2
        assert {(c.src, c.dst, str(c.service)) for c in report.cuts} == {("client", "web", "tcp/80")}  # fmt: skip
        left = list(sw.conntrack.conns())
        assert len(left) == 2 and all(c.orig[6] == 5432 for c in left)
        assert not web.send(0, "PA", b"more")  # its next packet goes nowhere
        assert db.send(0, "PA", b"more") and db.send(1, "PA", b"ok")  # still allowed: untouched

    rig(run)


def test_a_dry_run_counts_and_cuts_nothing() -> None:
    async def run(ctl: Controller, sw: Switch) -> None:
        Conn(ctl, sw, "client", "web", 80).open()
        Conn(ctl, sw, "web", "db", 5432).open()
        before = ctl.nb.state()
        after = before.apply(d.change() for d in ctl.nb.plan(closed_to_web(DOC)))
        report = await survey(before, after, trackers(before, ctl.sessions.values()), flush=False)
        assert report.connections == 1 and report.flushed == 0 and not report.unreachable
        assert len(list(sw.conntrack.conns())) == 4
        same = await survey(before, before, trackers(before, ctl.sessions.values()), flush=False)
        assert same.connections == 0

    rig(run)


def sw_ports(sw: Switch) -> dict[str, int]:
    return {p.name: no for no, p in sw.ports.items()}


def test_the_controller_cuts_on_its_own_after_a_change() -> None:
    async def run(ctl: Controller, sw: Switch) -> None:
        web = Conn(ctl, sw, "client", "web", 80)
        web.open()
        Conn(ctl, sw, "web", "db", 5432).open()
        await asyncio.sleep(0.2)  # the reconciler has seen the model the connections began in
        ctl.nb.apply(closed_to_web(DOC))
        for _ in range(100):
            if len(list(sw.conntrack.conns())) == 2:
                break
            await asyncio.sleep(0.05)
        assert all(c.orig[6] == 5432 for c in sw.conntrack.conns())
        assert len(list(sw.conntrack.conns())) == 2 and ctl.stats()["connections_cut"] == 2
        assert not web.send(0, "PA", b"more")

    rig(run)
