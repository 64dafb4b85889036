"""Agents: one Controller per chassis (`scope`), a controller serving the model, one store.

Three processes' worth in one: the controller (no switch session: it serves
the model and reads port status from what agents report) and an agent per
chassis, each with its own SqliteStore on one shared file, as separate
processes on one machine would have; each agent dials its switch over
OpenFlow on loopback (`dial`, what `vnet agent run --switch` does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vnet.controller.service import Controller
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.model.rules import ModelError
from vnet.ofp.agent import Agent
from vnet.store import SqliteStore

from .helpers import until

MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [{"name": "hv1", "underlay": "192.0.2.1"}, {"name": "hv2", "underlay": "192.0.2.2"}],
    "networks": [{"name": "n", "tenant": "t"}],
    "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"}],
    "ports": [
        {"name": "a", "tenant": "t", "network": "n", "chassis": "hv1"},
        {"name": "b", "tenant": "t", "network": "n", "chassis": "hv2"},
    ],
}


def switch(name: str, ports: list[str]) -> Switch:
    sw = Switch(name, fail_mode="secure")
    for p in ports:
        sw.add_port(PortConfig(p, kind="memory"), MemoryDevice(p))
    return sw


@contextlib.asynccontextmanager
async def chassis_agent(db: Path, chassis: str, sw: Switch) -> AsyncIterator[Controller]:
    """`sw` behind an OpenFlow listener, and an agent for `chassis` dialling it."""
    of = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    await of.start()
    store = SqliteStore(db)
    agent = Controller(store, scope=chassis, dial=f"tcp:127.0.0.1:{of.bound_ports()[0]}")
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()
        await of.stop()
        store.close()


def test_each_agent_programs_its_own_chassis_and_reports_its_ports_up(tmp_path: Path) -> None:
    async def main() -> None:
        db = tmp_path / "vnet.db"
        ctl = Controller(SqliteStore(db))  # no OpenFlow: it serves the model only
        ctl.nb.apply(MODEL)
        ports = {p.name: p for p in ctl.nb.list("port")}
        ifaces = [p.iface for p in ports.values()]  # type: ignore[attr-defined]
        sw1, sw2 = switch("hv1", ifaces), switch("hv2", ifaces)
        async with chassis_agent(db, "hv1", sw1) as a1:
            await until(lambda: bool(sw1.pipeline.rules()))
            assert ctl.port_status(ports["a"]) == "down"  # reported once the agent wrote it
            await until(lambda: ctl.port_status(ctl.nb.get("port", "a")) == "up")  # type: ignore[arg-type]
            assert ctl.port_status(ctl.nb.get("port", "b")) == "down"  # type: ignore[arg-type]
            assert [s.chassis for s in a1.sessions.values()] == [ctl.nb.get("chassis", "hv1").id]
            assert sw2.pipeline.rules() == []  # hv1's agent never touches another chassis
            async with chassis_agent(db, "hv2", sw2):
                await until(lambda: ctl.port_status(ctl.nb.get("port", "b")) == "up")  # type: ignore[arg-type]
                # a model change reaches the agent's switch from another process' write
                before = len(sw1.pipeline.rules())
                ctl.nb.create("port", {"name": "c", "tenant": "t", "network": "n",
                                       "chassis": "hv1"})  # fmt: skip
                await until(lambda: len(sw1.pipeline.rules()) > before)
            # hv2's agent stopped: it said so, b is down
            st = ctl.nb.state().get("chassis_status", ctl.nb.get("chassis", "hv2").id)
            assert st is not None and not st.switch and st.ports_up == []
            assert ctl.port_status(ctl.nb.get("port", "b")) == "down"  # type: ignore[arg-type]
            ctl.nb.delete("port", "a", tenant="t")
            await until(lambda: ports["a"].id not in
                        ctl.nb.state().get("chassis_status", a1.scope_id(ctl.nb.state())).ports_up)  # fmt: skip
        ctl.store.close()

    asyncio.run(main())


def test_a_chassis_report_names_what_is_wrong_and_users_cannot_write_one() -> None:
    ctl = Controller(SqliteStore())
    ctl.nb.apply(MODEL)
    hv1 = ctl.nb.get("chassis", "hv1").id
    with pytest.raises(ModelError) as e:
        ctl.nb.report_chassis(hv1, True, ["no-such-port"])
    assert e.value.loc == ("ports_up", 0)
    with pytest.raises(ModelError) as e:
        ctl.nb.report_chassis("nope", True, [])
    assert e.value.loc == ("id",)
    assert ctl.nb.state().all("chassis_status") == []  # nothing written
    with pytest.raises(ModelError) as e:
        ctl.nb.create("chassis_status", {"id": hv1, "switch": True})
    assert "chassis_status" in str(e.value)
    a = ctl.nb.get("port", "a").id
    assert ctl.nb.report_chassis(hv1, True, [a, a]) is not None
    assert ctl.nb.report_chassis(hv1, True, [a]) is None  # unchanged: nothing written
    ctl.nb.delete("chassis", "hv1", cascade=True)
    assert ctl.nb.state().all("chassis_status") == []  # gone with its chassis
