"""The controller against vnet switches: in-process, and over OpenFlow on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from vnet.compiler import table
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ofp.agent import Agent
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow
from vnet.store import SqliteStore

MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [{"name": "hv1"}],
    "networks": [{"name": "n", "tenant": "t"}],
    "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"}],
    "ports": [{"name": f"p{i}", "tenant": "t", "network": "n", "chassis": "hv1"} for i in (1, 2)],
}


def switch_for(ctl: Controller) -> Switch:
    sw = Switch("hv1", fail_mode="secure")
    for p in ctl.nb.list("port"):
        sw.add_port(PortConfig(p.iface, kind="memory"), MemoryDevice(p.iface))  # type: ignore[attr-defined]
    return sw


@contextlib.asynccontextmanager
async def over_openflow(ctl: Controller, sw: Switch) -> AsyncIterator[None]:
    """`sw` behind an OpenFlow agent on loopback, `ctl` dialling it as chassis hv1:
    inside, every session installed and synced; both stopped after."""
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    await agent.start()
    try:
        port = agent.bound_ports()[0]
        ctl.nb.update("chassis", "hv1", {"endpoint": f"tcp:127.0.0.1:{port}"})
        await ctl.start()
        for _ in range(100):
            if ctl.sessions and all(s.installed for s in ctl.sessions.values()):
                break
            await asyncio.sleep(0.05)
        await ctl.wait_synced()
        yield
    finally:
        await ctl.stop()
        await agent.stop()


def test_full_sync_then_nothing_and_a_restart_sends_nothing() -> None:
    async def main() -> None:
        store = SqliteStore()
        ctl = Controller(store)
        ctl.nb.apply(MODEL)
        sw = switch_for(ctl)
        sess = await ctl.attach(LocalSouthbound(sw))
        first = ctl.flow_mods_total
        assert first > 20 and len(sw.pipeline.rules()) == first
        assert await ctl.sync(sess) == 0
        # a new controller on the same store meets a switch that has everything
        again = Controller(store)
        s2 = await again.attach(LocalSouthbound(sw))
        assert again.flow_mods_total == 0 and s2.installed is not None
        # one new port: only its flows and its network's flood flows change
        again.nb.create("port", {"name": "p3", "tenant": "t", "network": "n", "chassis": "hv1"})
        p3 = again.nb.get("port", "p3")
        sw.add_port(PortConfig(p3.iface, kind="memory"), MemoryDevice(p3.iface))  # type: ignore[attr-defined]
        s2.full = True
        n = await again.sync(s2)
        assert 0 < n < first
        assert again.port_status(p3) == "up"  # type: ignore[arg-type]

    asyncio.run(main())


def test_drift_reports_a_hand_made_flow_and_repair_removes_it() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(MODEL)
        sw = switch_for(ctl)
        await ctl.attach(LocalSouthbound(sw))
        assert await ctl.drift("hv1") == []
        sw.commit(
            [FlowMod(FlowModCommand.ADD, parse_flow("table=3,priority=200,actions=drop").flow)]
        )
        out_sec = table("ls_out_port_sec")
        victim = next(r.flow for r in sw.pipeline.rules() if r.flow.table == out_sec)
        sw.commit([FlowMod(FlowModCommand.DELETE_STRICT, victim)])
        found = {(d.kind, d.flow.table) for d in await ctl.drift("hv1")}
        assert found == {("extra", 3), ("missing", out_sec)}
        report = await ctl.drift("hv1", repair=True)
        assert {d.kind for d in report} == {"extra", "missing"}
        assert "no cookie" in next(d.origin for d in report if d.kind == "extra")
        assert "port p" in next(d.origin for d in report if d.kind == "missing")
        assert await ctl.drift("hv1") == []

    asyncio.run(main())


def test_over_openflow_the_controller_dials_the_switch() -> None:
    async def main() -> None:
        store = SqliteStore()
        ctl = Controller(store)
        ctl.nb.apply(MODEL)
        sw = switch_for(ctl)
        agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
        await agent.start()
        port = agent.bound_ports()[0]
        ctl.nb.update("chassis", "hv1", {"endpoint": f"tcp:127.0.0.1:{port}"})
        await ctl.start()
        await ctl.wait_synced()
        for _ in range(100):
            if ctl.sessions:
                break
            await asyncio.sleep(0.05)
        await ctl.wait_synced()
        installed = ctl.flow_mods_total
        assert installed > 20 and len(sw.pipeline.rules()) == installed
        await ctl.stop()
        # restart: a full comparison over OpenFlow finds nothing to change
        ctl2 = Controller(store)
        await ctl2.start()
        for _ in range(100):
            if ctl2.sessions and all(s.installed is not None for s in ctl2.sessions.values()):
                break
            await asyncio.sleep(0.05)
        assert ctl2.sessions and ctl2.flow_mods_total == 0
        await ctl2.stop()
        await agent.stop()

    asyncio.run(main())


def test_open_vswitch_chassis_is_told_the_address_it_can_reach(tmp_path: Any) -> None:
    async def main() -> None:
        sock = tmp_path / "of.sock"
        ctl = Controller(SqliteStore(), ["ptcp:0:127.0.0.1", f"punix:{sock}"])
        await ctl.start()
        try:
            port = ctl.bound_ports()[0]
            local = ctl.nb.create("chassis", {"name": "a", "switch": "ovs", "ovsdb": "unix:/x"})
            remote = ctl.nb.create(
                "chassis", {"name": "b", "switch": "ovs", "ovsdb": "tcp:127.0.0.1:6640"}
            )
            assert ctl.advertised(local) == f"unix:{sock}"  # type: ignore[arg-type]
            assert ctl.advertised(remote) == f"tcp:127.0.0.1:{port}"  # type: ignore[arg-type]
            ctl.of_advertise = "tcp:192.0.2.1:6653"
            assert ctl.advertised(remote) == "tcp:192.0.2.1:6653"  # type: ignore[arg-type]
        finally:
            await ctl.stop()

    asyncio.run(main())
