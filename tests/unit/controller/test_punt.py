"""Packet-ins from the firewall's flows: reject answers and the connection log.

A hand-written `controller(reason=action)` flow stands for a compiled ACL
rule, and a fake cookie -> Punt map for the compiler's; the switch is a vnet
switch in this process or over OpenFlow on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from vnet.controller.punt import PacketIn, Punter
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ofp.agent import Agent
from vnet.pipeline.actions import Action
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow
from vnet.store import SqliteStore

from .helpers import until

COOKIE = 0xC0FFEE
EXAMPLE = Path(__file__).parents[3] / "examples" / "microseg.yaml"
RULE = "policy web-db rule 2"
# ports the model names, on a switch no chassis claims: the controller leaves its
# flows alone, so the test's own flows stand for what the compiler would make
MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "networks": [{"name": "n", "tenant": "t"}],
    "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"}],
    "ports": [{"name": f"p{i}", "tenant": "t", "network": "n"} for i in (1, 2)],
}
FLOWS = ("table=0,priority=0,actions=NORMAL",)


@dataclass(frozen=True)
class FakePunt:
    action: str
    rule: str
    log: bool
    direction: str
    port: str


Run = Callable[[Controller, Switch], Awaitable[None]]


def rig(test: Run, over_openflow: bool = False) -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore(), ["ptcp:0:127.0.0.1"] if over_openflow else [])
        ctl.nb.apply(MODEL)
        sw = Switch("punt-sw", fail_mode="secure")
        for p in ctl.nb.list("port"):
            sw.add_port(PortConfig(p.iface, kind="memory"), MemoryDevice(p.iface))  # type: ignore[attr-defined]
        sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(f).flow) for f in FLOWS])
        agent = None
        await ctl.start()
        try:
            if over_openflow:
                of = f"tcp:127.0.0.1:{ctl.bound_ports()[0]}"
                agent = Agent(sw, controllers=[of])
                await agent.start()
                await until(lambda: any(s.ofports for s in ctl.sessions.values()))
            else:
                await ctl.attach(LocalSouthbound(sw))
            await test(ctl, sw)
        finally:
            await ctl.stop()
            if agent is not None:
                await agent.stop()

    asyncio.run(main())


def ports(ctl: Controller) -> dict[str, Any]:
    return {p.name: p for p in ctl.nb.list("port")}


def punt_flow(sw: Switch, match: str) -> None:
    """The flow a compiled rule would be: to the controller, by cookie, ahead of the rest."""
    flow = parse_flow(
        f"table=0,priority=65000,cookie={COOKIE:#x},{match},actions=controller(reason=action)"
    ).flow
    sw.commit([FlowMod(FlowModCommand.ADD, flow)])


def send(sw: Switch, port: Any, frame: bytes) -> None:
    p = sw.port_by_name(port.iface)
    assert p is not None
    sw.receive(p, b"", frame)


def device(sw: Switch, port: Any) -> Any:
    p = sw.port_by_name(port.iface)
    assert p is not None
    return p.device


def syn(src: Any, dst: Any, seq: int = 1000) -> bytes:
    return bytes(
        Ether(src=src.mac, dst=dst.mac)
        / IP(src=src.ips[0], dst=dst.ips[0])
        / TCP(sport=40000, dport=5432, flags="S", seq=seq)
    )


def use(ctl: Controller, punt: FakePunt) -> None:
    ctl.punter.source = lambda _state: {COOKIE: punt}


def test_egress_reject_answers_the_sender_straight_out_of_its_port() -> None:
    async def t(ctl: Controller, sw: Switch) -> None:
        p = ports(ctl)
        use(ctl, FakePunt("reject", RULE, True, "egress", "p1"))
        punt_flow(sw, "tcp,tp_dst=5432")
        device(sw, p["p1"]).frames()
        send(sw, p["p1"], syn(p["p1"], p["p2"]))
        await until(lambda: ctl.punter.counts["rejected"] == 1)
        (got,) = [Ether(f) for f in device(sw, p["p1"]).frames()]
        assert got.dst == p["p1"].mac and got[IP].src == p["p2"].ips[0]
        assert got[TCP].flags == "RA" and got[TCP].ack == 1001 and got[TCP].sport == 5432
        assert device(sw, p["p2"]).frames() == []  # nothing reached the receiver
        (rec,) = ctl.punter.flow_log.query()[0]
        assert (rec.chassis, rec.src_port, rec.dst_port) == (f"{sw.dpid:016x}", "p1", "p2")
        assert (rec.verdict, rec.rule, rec.direction, rec.port) == ("reject", RULE, "egress", "p1")
        assert rec.endpoints() == "tcp 10.0.0.2:40000 -> 10.0.0.3:5432"

    rig(t)


def test_ingress_reject_enters_the_pipeline_as_the_receivers_answer() -> None:
    async def t(ctl: Controller, sw: Switch) -> None:
        p = ports(ctl)
        # the receiver's rule: the answer goes in from p2 and the flows carry it
        use(ctl, FakePunt("reject", RULE, False, "ingress", p["p2"].id))
        punt_flow(sw, "udp,tp_dst=53")
        # as the firewall's stages: from p2, only the switch's own answers (reg5 bit 1)
        p2 = sw.port_by_name(p["p2"].iface)
        assert p2 is not None
        guard = f"table=0,priority=65001,in_port={p2.port_no},reg5=0/0x2,actions=drop"
        sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(guard).flow)])
        device(sw, p["p1"]).frames()
        frame = bytes(
            Ether(src=p["p1"].mac, dst=p["p2"].mac)
            / IP(src=p["p1"].ips[0], dst=p["p2"].ips[0])
            / UDP(sport=5353, dport=53)
            / b"query"
        )
        send(sw, p["p1"], frame)
        await until(lambda: ctl.punter.counts["rejected"] == 1)
        (got,) = [Ether(f) for f in device(sw, p["p1"]).frames()]
        assert (got.src, got.dst) == (p["p2"].mac, p["p1"].mac)
        assert (got[ICMP].type, got[ICMP].code) == (3, 3)
        assert len(ctl.punter.flow_log) == 0  # the rule does not log

    rig(t)


def test_logged_deny_is_recorded_and_not_answered_and_strangers_are_counted() -> None:
    async def t(ctl: Controller, sw: Switch) -> None:
        p = ports(ctl)
        use(ctl, FakePunt("deny", RULE, True, "ingress", "p2"))
        punt_flow(sw, "tcp,tp_dst=5432")
        device(sw, p["p1"]).frames()
        send(sw, p["p1"], syn(p["p1"], p["p2"]))
        await until(lambda: ctl.punter.counts["logged"] == 1)
        assert device(sw, p["p1"]).frames() == [] and ctl.punter.counts["rejected"] == 0
        (rec,) = ctl.punter.flow_log.query(verdict="deny")[0]
        assert (rec.src_port, rec.dst_port, rec.port) == ("p1", "p2", "p2")
        # a cookie the map does not know, and a packet-in of another reason
        await ctl.punter.handle(PacketIn(sw.dpid, 1, 0xBAD, "action", syn(p["p1"], p["p2"])))
        await ctl.punter.handle(PacketIn(sw.dpid, 1, COOKIE, "no_match", b""))
        await ctl.punter.handle(PacketIn(0x99, 1, COOKIE, "action", b""))
        c = ctl.punter.counts
        assert (c["unknown_cookie"], c["not_action"], c["no_session"]) == (1, 1, 1)
        assert ctl.stats()["punts"]["logged"] == 1

    rig(t)


def test_over_openflow_the_packet_in_arrives_and_the_rst_goes_back() -> None:
    async def t(ctl: Controller, sw: Switch) -> None:
        p = ports(ctl)
        use(ctl, FakePunt("reject", RULE, True, "egress", "p1"))
        punt_flow(sw, "tcp,tp_dst=5432")
        device(sw, p["p1"]).frames()
        send(sw, p["p1"], syn(p["p1"], p["p2"], seq=7))
        await until(lambda: ctl.punter.counts["rejected"] == 1)
        await until(lambda: bool(device(sw, p["p1"]).sent))
        (got,) = [Ether(f) for f in device(sw, p["p1"]).frames()]
        assert got[TCP].flags == "RA" and got[TCP].ack == 8
        assert ctl.punter.flow_log.query(port="p2")[0][0].src_port == "p1"

    rig(t, over_openflow=True)


def test_a_full_queue_drops_and_counts() -> None:
    async def main() -> None:
        pu = Punter(lambda: None, lambda _dpid: None, lambda _s: {}, queue=2)  # type: ignore[arg-type,return-value]
        pu.received(PacketIn(1, 1, 1, "action", b""))
        assert pu.counts["not_running"] == 1
        pu.start()
        pu._task.cancel()  # type: ignore[union-attr]  # nobody takes them off the queue
        for _ in range(5):
            pu.received(PacketIn(1, 1, 1, "action", b""))
        assert pu.counts["queue_full"] == 3 and pu.stats()["queued"] == 2
        await pu.stop()

    asyncio.run(main())


class FakeSouthbound:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes]] = []
        self.actions: list[tuple[Action, ...]] = []

    async def packet_out(
        self, in_port: int, frame: bytes, out_port: int = 0, actions: Sequence[Action] = ()
    ) -> None:
        self.sent.append((in_port, out_port, frame))
        self.actions.append(tuple(actions))


@dataclass
class FakeLink:
    southbound: FakeSouthbound
    chassis: str | None
    ofports: dict[str, int]


def test_the_way_back_and_the_names_come_from_the_model() -> None:
    """On a chassis the model knows: the rule's port found by name among the ports
    bound there, the answer's way back chosen by the rule's side, the chassis named."""

    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply({**MODEL, "chassis": [{"name": "hv1"}],
                      "ports": [{**p, "chassis": "hv1"} for p in MODEL["ports"]]})  # fmt: skip
        state = ctl.nb.state()
        hv1 = state.find("chassis", "hv1")
        p = {o.name: o for o in state.all("port")}
        link = FakeLink(FakeSouthbound(), hv1.id, {p["p1"].iface: 7, p["p2"].iface: 9})
        punt: dict[int, FakePunt] = {}
        pu = Punter(ctl.nb.state, lambda _dpid: link, lambda _s: dict(punt))
        frame = syn(p["p1"], p["p2"])
        for n, (side, rule_port) in enumerate((("ingress", "p2"), ("egress", "p1"))):
            punt[COOKIE + n] = FakePunt("reject", f"rule {n}", True, side, rule_port)
            pu._punts = None  # a new map, as after a model change
            await pu.handle(PacketIn(1, 7, COOKIE + n, "action", frame))
        (in_in, in_out, _), (eg_in, eg_out, _) = link.southbound.sent
        assert (in_in, in_out) == (9, 0xFFFFFFF9)  # from the receiver's port, into the tables
        assert (eg_in, eg_out) == (0xFFFFFFFD, 7)  # from the controller, out of the sender's
        # through the tables, the answer carries the firewall's answer flag (reg5 bit 1)
        into_tables, straight_out = link.southbound.actions
        assert [a.format() for a in into_tables] == ["load:0x1->NXM_NX_REG5[1]"]
        assert straight_out == ()
        recs = pu.flow_log.query()[0]
        assert [(r.chassis, r.src_port, r.dst_port, r.port) for r in recs] == [
            ("hv1", "p1", "p2", "p2"),
            ("hv1", "p1", "p2", "p1"),
        ]

    asyncio.run(main())


def test_with_the_compiled_policy_a_rejected_syn_gets_its_rst() -> None:
    """examples/microseg.yaml: db's policy rejects client (logged).  The compiled flows
    punt the SYN, and the answer, entered as db's, passes db's side back to client."""

    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(yaml.safe_load(EXAMPLE.read_text()))
        sw = Switch("hv1", fail_mode="secure")
        for o in ctl.nb.list("port"):
            sw.add_port(PortConfig(o.iface, kind="memory"), MemoryDevice(o.iface))  # type: ignore[attr-defined]
        await ctl.start()
        try:
            await ctl.attach(LocalSouthbound(sw))
            await ctl.wait_synced()
            p = ports(ctl)
            send(sw, p["client"], syn(p["client"], p["db"]))
            await until(lambda: ctl.punter.counts["rejected"] == 1)
            (got,) = [Ether(f) for f in device(sw, p["client"]).frames()]
            assert got[TCP].flags == "RA" and got[IP].src == p["db"].ips[0]
            assert device(sw, p["db"]).frames() == []
            (rec,) = ctl.punter.flow_log.query(port="db")[0]
            assert (rec.chassis, rec.src_port, rec.verdict) == ("hv1", "client", "reject")
            assert rec.rule.startswith("policy protect-db")
        finally:
            await ctl.stop()

    asyncio.run(main())
