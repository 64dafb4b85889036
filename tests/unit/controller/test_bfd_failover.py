"""The controller learns BFD liveness from vnet switches and fails a gateway over.

Three vnet switches (hv1 hosts the workload, hv2 and hv3 are the router's
gateway chassis, in that order), each behind its OpenFlow agent on loopback,
the controller dialling them; their tunnels are joined by the simulated
underlay (`lab.underlay.carry`), and a loop here runs their BFD timers.  The
controller tells each switch its sessions (vnet's BFD_CONFIG), the switches
report their states (BFD_STATUS), and the controller writes each chassis'
`bfd_status`.  When hv2 goes silent, hv1 and hv3 see it down within the
detection time and the active gateway becomes hv3.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnet.controller.bfd import Reports, peers, wants
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice, MemoryTunnel
from vnet.lab.underlay import carry
from vnet.model.l3 import active_gateway
from vnet.model.objects import tunnel_iface
from vnet.ofp.agent import Agent
from vnet.ofp.vnetext import (
    BFD_CONFIG,
    BFD_STATUS,
    VNET_EXPERIMENTER,
    BfdWant,
    decode_config,
    decode_status,
    encode_config,
    encode_status,
)
from vnet.ofp.vnetext import split as split_msg
from vnet.packet.addr import ip4_int
from vnet.store import SqliteStore

UNDERLAY = {"hv1": "192.0.2.1", "hv2": "192.0.2.2", "hv3": "192.0.2.3"}
MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [
        {
            "name": n,
            "id": n,
            "underlay": ip,
            **({"physnets": {"phys": "up0"}} if n != "hv1" else {}),
        }
        for n, ip in UNDERLAY.items()
    ],
    "networks": [
        {"name": "n", "tenant": "t"},
        {"name": "ext", "tenant": "t", "external": True, "physnet": "phys"},
    ],
    "subnets": [
        {"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"},
        {"name": "se", "tenant": "t", "network": "ext", "cidr": "203.0.113.0/24"},
    ],
    "ports": [{"name": "a", "tenant": "t", "network": "n", "chassis": "hv1"}],
    "routers": [
        {
            "name": "r",
            "tenant": "t",
            "interfaces": [{"subnet": "s"}],
            "gateway": {"network": "ext", "chassis": ["hv2", "hv3"]},
        }
    ],
}


def test_the_codec_round_trips_and_refuses_partial_records() -> None:
    ws = [BfdWant(ip4_int("192.0.2.2"), "geneve"), BfdWant(7, "vxlan", 5, 300, 400)]
    assert split_msg(encode_config(ws, 9)) is not None
    exp, kind, body = split_msg(encode_config(ws, 9)) or (0, 0, b"")
    assert (exp, kind) == (VNET_EXPERIMENTER, BFD_CONFIG) and decode_config(body) == ws
    exp, kind, body = split_msg(encode_status({5: "up", 6: "admin_down"}, True)) or (0, 0, b"")
    assert (exp, kind) == (VNET_EXPERIMENTER, BFD_STATUS)
    assert decode_status(body) == ({5: "up", 6: "admin_down"}, True)
    for bad in (body[:-1], body[:-8] + bytes([0, 0, 0, 5, 9, 0, 0, 0])):
        try:
            decode_status(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad.hex()} decoded")


async def _until(what: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not what():
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def test_switches_report_bfd_and_a_silent_gateway_chassis_fails_over() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(MODEL)
        switches: dict[str, Switch] = {}
        agents: list[Agent] = []
        for name, ip in UNDERLAY.items():
            sw = Switch(name, fail_mode="secure")
            tun = MemoryTunnel(tunnel_iface("geneve"))
            sw.add_port(PortConfig(tun.name, kind="geneve", local_ip=ip4_int(ip),
                                   port_security=False), tun)  # fmt: skip
            switches[name] = sw
            agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
            await agent.start()
            agents.append(agent)
            ctl.nb.update("chassis", name, {"endpoint": f"tcp:127.0.0.1:{agent.bound_ports()[0]}"})
        alive = set(UNDERLAY)

        async def wire() -> None:
            while True:
                now = time.monotonic()
                live = [switches[n] for n in sorted(alive)]
                for sw in live:
                    sw.bfd.run(now)
                underlay = {ip4_int(UNDERLAY[n]): switches[n] for n in alive}
                carry(live, underlay, now)
                await asyncio.sleep(0.01)

        def reports() -> dict[str, dict[str, str]]:
            return {o.id: dict(o.sessions) for o in ctl.nb.state().all("bfd_status")}

        def gateway() -> str | None:
            st = ctl.nb.state()
            return active_gateway(st.all("router")[0], st)

        await ctl.start()
        task = asyncio.create_task(wire())
        try:
            every_up = {
                "hv1": {"hv2": "up", "hv3": "up"},
                "hv2": {"hv1": "up", "hv3": "up"},
                "hv3": {"hv1": "up", "hv2": "up"},
            }
            await _until(lambda: reports() == every_up, 10.0)
            assert gateway() == "hv2"

            def settled() -> bool:  # the peers' fast timers in use (1 s while coming up)
                shown = [x for sw in switches.values() for x in sw.bfd.show()]
                return len(shown) == 6 and all(x["detect_time_us"] == 300_000 for x in shown)

            await _until(settled, 5.0)
            alive.discard("hv2")  # hv2 goes silent; its OpenFlow connection stays
            took = await _until(lambda: gateway() == "hv3", 3.0)
            assert took < 1.5, (took, reports())
            got = reports()
            assert got["hv1"]["hv2"] == "down" and got["hv3"]["hv2"] == "down"
            assert got["hv1"]["hv3"] == "up"
            alive.add("hv2")  # back: the first gateway chassis is active again
            await _until(lambda: gateway() == "hv2", 5.0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ctl.stop()
            for agent in agents:
                await agent.stop()

    asyncio.run(main())


def test_sessions_run_to_the_gateway_chassis_and_from_them_to_all_vnet_chassis() -> None:
    ctl = Controller(SqliteStore())
    doc = {**MODEL, "chassis": [*MODEL["chassis"], {"name": "hv4", "underlay": "192.0.2.4"},
                                {"name": "ovs1", "underlay": "192.0.2.5", "switch": "ovs"}]}  # fmt: skip
    ctl.nb.apply(doc)
    st = ctl.nb.state()
    ids = {c.name: c.id for c in st.all("chassis")}
    got = {n: sorted(st.get("chassis", c).name for c in peers(st, ids[n])) for n in ids}
    assert got == {
        "hv1": ["hv2", "hv3"],  # it hosts the router: its gateway chassis
        "hv2": ["hv1", "hv3", "hv4"],  # a gateway chassis: every vnet chassis
        "hv3": ["hv1", "hv2", "hv4"],
        "hv4": ["hv2", "hv3"],
        "ovs1": [],  # an Open vSwitch chassis not kept over OVSDB (no `ovsdb`): none
    }
    assert [w.peer for w in wants(st, ids["hv1"])] == [ip4_int("192.0.2.2"), ip4_int("192.0.2.3")]
    ctl.nb.delete("router", "r", tenant="t")
    assert all(not peers(ctl.nb.state(), c) for c in ids.values())


def test_a_session_never_up_is_not_reported_and_a_full_report_replaces() -> None:
    ctl = Controller(SqliteStore())
    ctl.nb.apply(MODEL)
    rep = Reports(ctl.nb)
    hv2, hv3 = ip4_int(UNDERLAY["hv2"]), ip4_int(UNDERLAY["hv3"])

    def stored() -> dict[str, str]:
        o = ctl.nb.state().get("bfd_status", "hv1")
        return dict(o.sessions) if o is not None else {}

    rep.received("hv1", {hv2: "down", hv3: "init"}, full=True)  # coming up: says nothing
    assert stored() == {}
    rep.received("hv1", {hv2: "up"}, full=False)
    assert stored() == {"hv2": "up"}
    rep.received("hv1", {hv2: "down"}, full=False)
    assert stored() == {"hv2": "down"}
    rep.received("hv1", {hv3: "up"}, full=True)  # hv2's session is gone
    assert stored() == {"hv3": "up"}
    rep.received("hv1", {hv2: "down", hv3: "up"}, full=True)  # back, but not up yet
    assert stored() == {"hv3": "up"}


def test_the_new_active_gateway_chassis_announces_the_gateway_and_floating_ip() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        doc = {**MODEL, "floating_ips": [{"name": "f", "tenant": "t", "network": "ext",
                                          "ip": "203.0.113.50", "port": "a"}]}  # fmt: skip
        ctl.nb.apply(doc)
        st = ctl.nb.state()
        gw = st.all("router")[0].gateway
        uplinks: dict[str, MemoryDevice] = {}
        sessions = {}
        for name in ("hv2", "hv3"):
            sw = Switch(name, fail_mode="secure")
            uplinks[name] = MemoryDevice("up0")
            sw.add_port(PortConfig("up0", kind="memory", port_security=False), uplinks[name])
            sessions[name] = await ctl.attach(LocalSouthbound(sw))

        def garps(name: str) -> list[tuple[str, str]]:
            out = []
            for f in uplinks[name].frames():
                e = Ether(f)
                if ARP in e and e[ARP].psrc == e[ARP].pdst:
                    out.append((e.src, e[ARP].psrc))
            return sorted(out)

        assert garps("hv2") == [(gw.mac, gw.ip), (gw.mac, "203.0.113.50")]
        assert garps("hv3") == []
        await ctl.sync(sessions["hv2"])
        await ctl.sync(sessions["hv3"])
        assert garps("hv2") == [] and garps("hv3") == []  # once, not at every sync
        ctl.nb.report_bfd("hv1", {"hv2": "down", "hv3": "up"})  # hv2 fails over to hv3
        await ctl.sync(sessions["hv2"])
        await ctl.sync(sessions["hv3"])
        assert garps("hv3") == [(gw.mac, gw.ip), (gw.mac, "203.0.113.50")]
        assert garps("hv2") == []

    asyncio.run(main())


def test_on_a_vlan_external_network_the_announcements_carry_its_tag() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        nets = [n if n["name"] != "ext" else {**n, "vlan": 120} for n in MODEL["networks"]]
        ctl.nb.apply({**MODEL, "networks": nets})
        gw = ctl.nb.state().all("router")[0].gateway
        sw = Switch("hv2", fail_mode="secure")
        up = MemoryDevice("up0")
        sw.add_port(PortConfig("up0", kind="memory", port_security=False), up)
        await ctl.attach(LocalSouthbound(sw))
        got = [Ether(f) for f in up.frames()]
        garps = [(e[Dot1Q].vlan, e.src, e[ARP].psrc) for e in got if ARP in e]
        assert garps == [(120, gw.mac, gw.ip)]

    asyncio.run(main())
