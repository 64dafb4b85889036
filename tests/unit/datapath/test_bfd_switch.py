"""BFD between two switches over their tunnel ports, joined by the simulated underlay,
on an injected clock; and the control socket's bfd-add/-del/-show."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from scapy.contrib.bfd import BFD
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from vnet.datapath import PortConfig, Switch
from vnet.datapath.bfd import Session
from vnet.datapath.control import ControlServer
from vnet.datapath.ports.memory import MemoryTunnel, split_outer
from vnet.datapath.runner import Runner
from vnet.datapath.switch import SwitchError
from vnet.lab.underlay import carry
from vnet.model.objects import tunnel_iface
from vnet.packet import bfd as codec
from vnet.packet import encap
from vnet.packet.addr import ip4_int
from vnet.packet.bfd import Bfd, State

A_IP, B_IP = ip4_int("192.0.2.1"), ip4_int("192.0.2.2")


class Pair:
    def __init__(self, kind: str = "geneve") -> None:
        self.a, self.b = Switch("a", fail_mode="secure"), Switch("b", fail_mode="secure")
        self.tunnels: dict[str, MemoryTunnel] = {}
        for sw, ip in ((self.a, A_IP), (self.b, B_IP)):
            sw.bfd.rng = random.Random(sw.name)
            tun = MemoryTunnel(tunnel_iface(kind))
            sw.add_port(PortConfig(tun.name, kind=kind, local_ip=ip, port_security=False), tun)
            self.tunnels[sw.name] = tun
        self.port = tunnel_iface(kind)
        self.underlay = {A_IP: self.a, B_IP: self.b}
        self.changes: list[tuple[str, str, bool]] = []
        for sw in (self.a, self.b):
            sw.bfd.on_change = lambda port, peer, s, n=sw.name: self.changes.append(
                (n, s.state.label, s.forwarding)
            )

    def peer(self) -> None:
        for sw, other in ((self.a, B_IP), (self.b, A_IP)):
            port = sw.port_by_name(self.port)
            assert port is not None
            sw.bfd.add(port, other, 0.0)

    def run(self, t0: float, t1: float, *, silent: Switch | None = None) -> float:
        t = t0
        while t < t1:
            for sw in (self.a, self.b):
                sw.bfd.run(t)
            if silent is not None:
                self.tunnels[silent.name].take()  # lost on the wire
            carry((self.a, self.b), self.underlay, t)
            t = round(t + 0.005, 6)
        return t

    def session(self, sw: Switch, peer: int) -> Session:
        return sw.bfd.peers[(self.port, peer)].session


@pytest.mark.parametrize("kind", ["geneve", "vxlan", "nvgre"])
def test_two_switches_come_up(kind: str) -> None:
    p = Pair(kind)
    p.peer()
    p.run(0.0, 3.0)
    sa, sb = p.session(p.a, B_IP), p.session(p.b, A_IP)
    assert sa.state is State.UP and sb.state is State.UP
    assert sa.remote_disc == sb.local_disc and sb.remote_disc == sa.local_disc
    assert ("a", "up", True) in p.changes and ("b", "up", True) in p.changes
    (row,) = p.a.bfd.show()
    assert row["port"] == p.port and row["peer"] == "192.0.2.2" and row["state"] == "up"
    # BFD never reached the pipeline, but the port counted what it took
    assert p.a.rx_packets == 0 and p.b.rx_packets == 0
    port = p.a.port_by_name(p.port)
    assert port is not None and port.stats.rx_packets > 10
    assert p.a.bfd.drops == {} and p.b.bfd.drops == {}


def test_the_wire_is_what_open_vswitch_sends() -> None:
    p = Pair("geneve")
    p.peer()
    p.a.bfd.run(0.0)
    ((dst, packet),) = p.tunnels["a"].take()
    assert dst == B_IP
    outer = IP(packet)
    assert outer.src == "192.0.2.1" and outer.dst == "192.0.2.2"
    assert outer[UDP].dport == 6081
    g = encap.decap_udp("geneve", A_IP, B_IP, bytes(outer[UDP].payload))
    assert g.key == 0 and g.options == ()  # VNI 0, no logical port option
    inner = Ether(g.inner)
    assert inner.dst == "00:23:20:00:00:01"
    assert inner[IP].src == "169.254.1.1" and inner[IP].dst == "169.254.1.0"
    assert inner[IP].ttl == 255 and inner[UDP].dport == 3784
    assert 49152 <= inner[UDP].sport <= 65535
    b = BFD(bytes(inner[UDP].payload))
    assert b.sta == 1 and b.your_discriminator == 0  # Down, peer not heard yet
    assert b.min_tx_interval == 1_000_000  # slow until Up


def test_a_silent_peer_is_down_within_a_second() -> None:
    p = Pair()
    p.peer()
    t = p.run(0.0, 3.0)
    sa = p.session(p.a, B_IP)
    assert sa.state is State.UP
    p.changes.clear()
    heard = sa.last_rx
    assert heard is not None
    while sa.state is State.UP and t < heard + 2.0:
        t = p.run(t, round(t + 0.005, 6), silent=p.b)
    assert sa.state is State.DOWN and sa.diag.label == "expired"
    assert t - heard <= 1.0
    assert t - heard <= 0.3 + 0.01  # 3 x 100 ms
    assert ("a", "down", False) in p.changes
    # b hears a say Down and goes Down too (neighbor signaled)
    p.run(t, t + 0.5, silent=p.b)
    assert p.session(p.b, A_IP).state is not State.UP
    # the path heals: both Up again
    p.run(t + 0.5, t + 4.0)
    assert sa.state is State.UP and p.session(p.b, A_IP).state is State.UP


def test_admin_down_peer_takes_the_session_down() -> None:
    p = Pair()
    p.peer()
    t = p.run(0.0, 3.0)
    p.session(p.b, A_IP).admin_down(t)
    p.run(t, t + 1.0)
    sa = p.session(p.a, B_IP)
    assert sa.state is State.DOWN and sa.diag.label == "neighbor_down"
    assert sa.remote_state is State.ADMIN_DOWN


def test_frames_not_for_a_session_are_dropped_by_reason() -> None:
    p = Pair()
    p.peer()
    port = p.a.port_by_name(p.port)
    assert port is not None
    good = Bfd(state=State.DOWN, my_disc=77)

    def send(inner: bytes, key: int = 0, src: int = B_IP) -> None:
        outer = encap.Outer(src, A_IP, key, 1)
        parts = split_outer(encap.encap("geneve", inner, outer))
        assert parts is not None
        p.a.receive_tunnel_batch(port, [(src, parts[2])], 0.0)

    send(codec.frame(good, eth_src=2, udp_src=49152), src=ip4_int("192.0.2.9"))
    raw = bytearray(codec.frame(good, eth_src=2, udp_src=49152))
    raw[14 + 8] = 254  # TTL (header checksum now wrong as well: fix it)
    raw[24:26] = b"\0\0"
    from vnet.packet.checksum import internet_checksum

    raw[24:26] = internet_checksum(bytes(raw[14:34])).to_bytes(2, "big")
    send(bytes(raw))
    send(codec.frame(good._replace(state=State.INIT, your_disc=5), eth_src=2, udp_src=49152))
    short = codec.frame(good, eth_src=2, udp_src=49152)
    bad_version = bytearray(short)
    bad_version[42] = 0x40  # version 2
    send(bytes(bad_version))
    assert p.a.bfd.drops == {"no_session": 2, "bad_ttl": 1, "bad_version": 1}
    assert p.a.rx_packets == 0
    # with a non-zero key it is a logical port's traffic: the pipeline sees it
    send(codec.frame(good, eth_src=2, udp_src=49152), key=5)
    assert p.a.rx_packets == 1
    assert p.session(p.a, B_IP).rx_packets == 0


def test_deleting_the_port_ends_its_sessions() -> None:
    p = Pair()
    p.peer()
    p.a.del_port(p.port)
    assert p.a.bfd.peers == {} and p.a.bfd.by_disc == {}


def test_add_refuses_what_is_not_a_tunnel_peer() -> None:
    p = Pair()
    port = p.a.port_by_name(p.port)
    assert port is not None
    with pytest.raises(ValueError, match="peer"):
        p.a.bfd.add(port, A_IP, 0.0)  # ourselves
    with pytest.raises(ValueError, match="desired_min_tx"):
        p.a.bfd.add(port, B_IP, 0.0, desired_min_tx=0)
    assert p.a.bfd.peers == {}


# -- the control socket ----------------------------------------------------------


def server(tmp_path: Path) -> ControlServer:
    sw = Switch("sw", fail_mode="secure")
    sw.add_port(
        PortConfig("geneve_sys", kind="geneve", local_ip=A_IP, port_security=False),
        MemoryTunnel("geneve_sys"),
    )
    sw.add_port(PortConfig("eth0", kind="memory"), MemoryTunnel("eth0"))
    return ControlServer(Runner(sw, clock=lambda: 0.0), str(tmp_path / "sw.ctl"))


def test_control_bfd_add_show_del(tmp_path: Path) -> None:
    ctl = server(tmp_path)
    r = ctl.bfd_add({"port": "geneve_sys", "peer": "192.0.2.2", "min_tx": 100, "min_rx": 200})
    assert r["peer"] == "192.0.2.2" and r["local_disc"] > 0
    (row,) = ctl.bfd_show({})["sessions"]
    assert row["state"] == "down" and row["forwarding"] is False
    s = ctl.runner.switch.bfd.peers[("geneve_sys", B_IP)].session
    assert (s.cfg_min_tx, s.cfg_min_rx, s.detect_mult) == (100_000, 200_000, 3)
    ctl.bfd_del({"port": "geneve_sys", "peer": "192.0.2.2"})
    assert ctl.bfd_show({})["sessions"] == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"port": "nope", "peer": "192.0.2.2"}, "port"),
        ({"port": "eth0", "peer": "192.0.2.2"}, "port"),  # not a tunnel
        ({"port": "geneve_sys", "peer": "300.1.1.1"}, "peer"),
        ({"port": "geneve_sys", "peer": "192.0.2.2", "min_tx": 0}, "min_tx"),
        ({"port": "geneve_sys", "peer": "192.0.2.2", "min_rx": "x"}, "min_rx"),
        ({"port": "geneve_sys", "peer": "192.0.2.2", "mult": 0}, "detect_mult"),
    ],
)
def test_control_bfd_add_refuses_naming_the_field(
    tmp_path: Path, args: dict[str, object], field: str
) -> None:
    ctl = server(tmp_path)
    reply = asyncio.run(ctl.handle(json.dumps({"cmd": "bfd-add", "args": args}).encode()))
    assert reply["ok"] is False and field in reply["error"]
    assert ctl.runner.switch.bfd.peers == {}


def test_control_bfd_del_unknown_session(tmp_path: Path) -> None:
    ctl = server(tmp_path)
    with pytest.raises((SwitchError, ValueError), match="peer"):
        ctl.bfd_del({"port": "geneve_sys", "peer": "192.0.2.2"})


def test_the_runner_times_the_sessions() -> None:
    """The switch's own timer (real clock): sessions come Up, then a silent peer is
    found out within a second."""
    p = Pair()

    async def main() -> tuple[State, State, float]:
        runners = [Runner(p.a), Runner(p.b)]
        for r in runners:
            await r.start()
        try:
            p.peer()
            loop = asyncio.get_running_loop()
            sa = p.session(p.a, B_IP)
            silent = False

            async def wire() -> None:
                while True:
                    if silent:
                        p.tunnels["b"].take()
                    carry((p.a, p.b), p.underlay, loop.time())
                    await asyncio.sleep(0.002)

            task = asyncio.create_task(wire())
            deadline = loop.time() + 5.0
            while sa.state is not State.UP and loop.time() < deadline:
                await asyncio.sleep(0.01)
            up = sa.state
            silent = True
            cut = loop.time()
            while sa.state is State.UP and loop.time() < cut + 3.0:
                await asyncio.sleep(0.005)
            task.cancel()
            return up, sa.state, loop.time() - cut
        finally:
            for r in runners:
                r.close()

    up, after, took = asyncio.run(main())
    assert up is State.UP
    assert after is State.DOWN
    assert took <= 1.0


def test_the_cli_adds_shows_and_deletes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from vnet.cli import bfd as bfd_cli
    from vnet.cli.main import app

    ctl = server(tmp_path)
    sent: list[tuple[str, dict[str, object]]] = []

    def fake(switch: str, cmd: str, **args: object) -> object:
        sent.append((cmd, args))
        return ctl.commands[cmd](args)

    monkeypatch.setattr(bfd_cli, "_ctl", fake)
    runner = CliRunner()
    r = runner.invoke(app, ["bfd", "add", "sw", "geneve_sys", "192.0.2.2", "--min-rx", "300"])
    assert r.exit_code == 0, r.output
    assert sent[-1] == (
        "bfd-add",
        {"port": "geneve_sys", "peer": "192.0.2.2", "min_tx": 100, "min_rx": 300, "mult": 3},
    )
    assert "local discriminator 0x" in r.output
    r = runner.invoke(app, ["bfd", "show", "sw"])
    assert r.exit_code == 0, r.output
    assert "geneve_sys 192.0.2.2: down (none), not forwarding" in r.output
    assert "drops: none" in r.output
    r = runner.invoke(app, ["bfd", "show", "sw", "--json"])
    assert json.loads(r.output)["sessions"][0]["state"] == "down"
    r = runner.invoke(app, ["bfd", "add", "sw", "geneve_sys", "192.0.2.2", "--mult", "0"])
    assert r.exit_code == 2 and "--mult" in r.output
    r = runner.invoke(app, ["bfd", "del", "sw", "geneve_sys", "192.0.2.2"])
    assert r.exit_code == 0 and "removed" in r.output
    assert "no BFD sessions" in runner.invoke(app, ["bfd", "show", "sw"]).output
