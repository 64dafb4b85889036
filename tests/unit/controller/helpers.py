"""What the controller tests share: waiting for a condition in the event loop, and a
controller with one vnet switch in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ofp.agent import Agent
from vnet.store import SqliteStore


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once `cond()` holds, polling every 20 ms; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


@asynccontextmanager
async def one_switch(
    model: dict[str, Any], over_openflow: bool = False
) -> AsyncIterator[tuple[Controller, Switch, dict[str, MemoryDevice]]]:
    """A controller holding `model` and a vnet switch `hv1` in this process, each of the
    model's ports a memory device on it (by name), attached in-process or over OpenFlow on
    loopback, synced; stopped after."""
    ctl = Controller(SqliteStore(), ["ptcp:0:127.0.0.1"] if over_openflow else [])
    ctl.nb.apply(model)
    sw = Switch("hv1", fail_mode="secure")
    devices = {}
    for p in ctl.nb.state().all("port"):
        devices[p.name] = MemoryDevice(p.iface)
        sw.add_port(PortConfig(p.iface, kind="memory"), devices[p.name])
    agent = None
    await ctl.start()
    try:
        if over_openflow:
            agent = Agent(sw, controllers=[f"tcp:127.0.0.1:{ctl.bound_ports()[0]}"])
            await agent.start()
            await until(lambda: any(s.installed for s in ctl.sessions.values()))
        else:
            await ctl.attach(LocalSouthbound(sw))
        await ctl.wait_synced()
        yield ctl, sw, devices
    finally:
        await ctl.stop()
        if agent is not None:
            await agent.stop()
