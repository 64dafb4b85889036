"""An OpenFlow agent on an event loop of its own thread, for tests that talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ofp.agent import Agent


def memory_switch(name: str, n_ports: int) -> Switch:
    """A secure-mode switch with in-memory ports p1..pN, port security off."""
    sw = Switch(name, fail_mode="secure")
    for i in range(1, n_ports + 1):
        sw.add_port(
            PortConfig(f"p{i}", kind="memory", port_security=False),
            MemoryDevice(f"p{i}", hw_addr=i),
        )
    return sw


@contextlib.contextmanager
def agent_thread(agent: Agent) -> Iterator[asyncio.AbstractEventLoop]:
    """Run `agent` until the block ends; its loop, for `run_coroutine_threadsafe`."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(agent.start())
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(5)
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(agent.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


@contextlib.contextmanager
def serving(sw: Switch) -> Iterator[str]:
    """`sw` behind an agent listening on loopback until the block ends; its target."""
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    with agent_thread(agent):
        yield f"tcp:127.0.0.1:{agent.bound_ports()[0]}"
