"""An isolated switch stands down: the flows of its stand-down set match nothing while
every BFD session that was up is down, and match again when one is up.

Two switches, `gw` (a gateway chassis: an uplink and a workload port) and its peer,
joined by the simulated underlay on an injected clock; `gw` answers ARP from the
uplink for a gateway address with a flow whose cookie is in its stand-down set, below
it an ordinary flow sends what comes in by the uplink to the workload port.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether

from vnet.datapath import PortConfig, Switch
from vnet.datapath.control import ControlServer
from vnet.datapath.ports.memory import MemoryDevice, MemoryTunnel
from vnet.datapath.runner import Runner
from vnet.lab.underlay import carry
from vnet.model.objects import tunnel_iface
from vnet.packet.addr import ip4_int
from vnet.packet.bfd import State
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow

GW_IP, PEER_IP = ip4_int("192.0.2.2"), ip4_int("192.0.2.3")
TUNNEL = tunnel_iface("geneve")
GATEWAY_COOKIE = 0x1234_0000_0051
OTHER_COOKIE = 0x1234_0000_0007
ARP_FOR_GW = bytes(
    Ether(src="02:00:00:00:00:99", dst="ff:ff:ff:ff:ff:ff")
    / ARP(op=1, hwsrc="02:00:00:00:00:99", psrc="203.0.113.99", pdst="203.0.113.1")
)


class Lab:
    def __init__(self) -> None:
        self.gw = Switch("gw", fail_mode="secure")
        self.peer = Switch("peer", fail_mode="secure")
        self.tunnels: dict[str, MemoryTunnel] = {}
        for sw, ip in ((self.gw, GW_IP), (self.peer, PEER_IP)):
            sw.bfd.rng = random.Random(sw.name)
            tun = MemoryTunnel(TUNNEL)
            sw.add_port(PortConfig(TUNNEL, kind="geneve", local_ip=ip, port_security=False), tun)
            self.tunnels[sw.name] = tun
        self.devs = {n: MemoryDevice(n) for n in ("up", "vm")}
        self.no = {
            n: self.gw.add_port(PortConfig(n, kind="memory", port_security=False), d).port_no
            for n, d in self.devs.items()
        }
        self.underlay = {GW_IP: self.gw, PEER_IP: self.peer}
        self.t = 0.0
        up, vm = self.no["up"], self.no["vm"]
        self.install(
            f"cookie={GATEWAY_COOKIE:#x},priority=120,in_port={up},arp,arp_op=1,"
            f"arp_tpa=203.0.113.1 actions=IN_PORT",
            f"cookie={OTHER_COOKIE:#x},priority=10,in_port={up} actions=output:{vm}",
        )

    def install(self, *flows: str) -> None:
        self.gw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in flows])

    def sessions(self) -> None:
        for sw, other in ((self.gw, PEER_IP), (self.peer, GW_IP)):
            port = sw.port_by_name(TUNNEL)
            assert port is not None
            sw.bfd.add(port, other, self.t)

    def run(self, seconds: float, *, silent: bool = False) -> None:
        """Time passes; `silent`: nothing the peer sends arrives (the underlay is cut)."""
        end = self.t + seconds
        while self.t < end:
            for sw in (self.gw, self.peer):
                sw.bfd.run(self.t)
            if silent:
                self.tunnels["peer"].take()
                self.tunnels["gw"].take()
            carry((self.gw, self.peer), self.underlay, self.t)
            self.t = round(self.t + 0.005, 6)

    def state(self) -> State:
        return self.gw.bfd.peers[(TUNNEL, PEER_IP)].session.state

    def ask(self) -> str:
        """Where gw's answer to the ARP for its gateway address went: 'up' (answered),
        'vm' (the ordinary flow below took it) or ''."""
        p = self.gw.port_by_name("up")
        assert p is not None
        self.gw.receive_batch(p, [(b"", ARP_FOR_GW)], self.t)
        got = {n: d.frames() for n, d in self.devs.items()}
        assert sum(len(f) for f in got.values()) <= 1
        return next((n for n, f in got.items() if f), "")

    def rule(self, cookie: int) -> object:
        return next(r for r in self.gw.pipeline.rules() if r.flow.cookie == cookie)


def test_an_isolated_switch_stands_down_and_comes_back() -> None:
    lab = Lab()
    lab.gw.set_stand_down({GATEWAY_COOKIE})
    lab.sessions()
    lab.run(3.0)
    assert lab.state() is State.UP and not lab.gw.bfd.isolated
    assert lab.ask() == "up"  # the gateway answers
    answered = lab.rule(GATEWAY_COOKIE)
    assert answered.packet_count == 1  # type: ignore[attr-defined]
    lab.run(1.0, silent=True)  # the underlay is cut: every session goes down
    assert lab.state() is State.DOWN and lab.gw.bfd.isolated
    assert lab.ask() == "vm"  # the gateway's flow matches nothing, the one below does
    # still installed, with its counters: stats and the controller's drift check see it
    assert lab.rule(GATEWAY_COOKIE) is answered and answered.packet_count == 1  # type: ignore[attr-defined]
    assert len(lab.gw.pipeline.rules()) == 2 and lab.gw.pipeline.asleep == {answered}
    lab.run(3.0)  # the underlay is back
    assert lab.state() is State.UP and not lab.gw.bfd.isolated
    assert lab.ask() == "up"
    assert lab.gw.pipeline.asleep == set()


def test_sessions_that_never_came_up_do_not_isolate() -> None:
    lab = Lab()
    lab.gw.set_stand_down({GATEWAY_COOKIE})
    assert not lab.gw.bfd.isolated  # no session at all
    lab.sessions()
    lab.run(5.0, silent=True)  # the peer never answers
    assert lab.state() is not State.UP and not lab.gw.bfd.isolated
    assert lab.ask() == "up"


def test_flows_and_the_set_changed_while_isolated() -> None:
    lab = Lab()
    lab.sessions()
    lab.run(3.0)
    lab.run(1.0, silent=True)
    assert lab.gw.bfd.isolated
    assert lab.ask() == "up"  # not in the stand-down set (there is none yet)
    lab.gw.set_stand_down({GATEWAY_COOKIE})  # the set arrives while isolated: at once
    assert lab.ask() == "vm"
    # a flow of the set added while isolated matches nothing either; a modify keeps it so
    up = lab.no["up"]
    lab.install(f"cookie={GATEWAY_COOKIE:#x},priority=130,in_port={up},arp actions=IN_PORT")
    assert lab.ask() == "vm" and len(lab.gw.pipeline.asleep) == 2
    mod = parse_flow(f"priority=130,in_port={up},arp actions=output:{up}").flow
    lab.gw.commit([FlowMod(FlowModCommand.MODIFY_STRICT, mod)])
    assert lab.ask() == "vm"
    # a deleted one is gone for good; the set emptied wakes the rest
    lab.gw.commit([FlowMod(FlowModCommand.DELETE_STRICT, mod)])
    assert len(lab.gw.pipeline.asleep) == 1 and len(lab.gw.pipeline.rules()) == 2
    lab.gw.set_stand_down(())
    assert lab.ask() == "up" and lab.gw.pipeline.asleep == set()
    # removing the sessions ends the isolation (none is configured)
    lab.gw.set_stand_down({GATEWAY_COOKIE})
    assert lab.ask() == "vm"
    lab.gw.bfd.remove(TUNNEL, PEER_IP)
    assert not lab.gw.bfd.isolated and lab.ask() == "up"


def test_bfd_show_says_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from vnet.cli import bfd as bfd_cli
    from vnet.cli.main import app

    lab = Lab()
    ctl = ControlServer(Runner(lab.gw, clock=lambda: lab.t), str(tmp_path / "gw.ctl"))
    lab.gw.set_stand_down({GATEWAY_COOKIE, 0x99})
    lab.sessions()
    lab.run(3.0)
    r = ctl.bfd_show({})
    assert r["isolated"] is False and r["stand_down"] == {"flows": 1, "standing_down": 0}
    lab.run(1.0, silent=True)
    r = ctl.bfd_show({})
    assert r["isolated"] is True and r["stand_down"] == {"flows": 1, "standing_down": 1}
    monkeypatch.setattr(bfd_cli, "_ctl", lambda switch, cmd, **args: ctl.commands[cmd](args))
    shown = CliRunner().invoke(app, ["bfd", "show", "gw"])
    assert shown.exit_code == 0, shown.output
    assert (
        "isolated: every session that was up is down; 1 of 1 active-gateway flows stand "
        "down" in " ".join(shown.output.split())
    )
