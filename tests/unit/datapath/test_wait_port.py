"""A port that waits for its device: created before the device exists, holding frames.

What a migrating workload's new chassis does while the workload's cable is in
flight, and what a VM's tap port does before the VM starts.
"""

from __future__ import annotations

import pytest

from vnet.datapath import Switch, parse_port_spec
from vnet.datapath.ports.memory import MemoryDevice
from vnet.datapath.runner import Runner
from vnet.datapath.switch import HOLD_TIME, SwitchError
from vnet.pipeline import parse_flow
from vnet.pipeline.flow import FlowMod, FlowModCommand

from .conftest import udp


def pair(wait: bool) -> tuple[Switch, MemoryDevice, MemoryDevice]:
    sw = Switch("w", fail_mode="secure")
    a, b = MemoryDevice("a"), MemoryDevice("b")
    b.up = False  # the device is not there yet
    sw.add_port(parse_port_spec("a,port_security=false", kind="memory"), a)
    sw.add_port(parse_port_spec(f"b,port_security=false,wait={wait}", kind="memory"), b)
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow("in_port=1,actions=output:2").flow)])
    return sw, a, b


def send(sw: Switch, n: int, now: float) -> None:
    port = sw.port_by_name("a")
    assert port is not None
    sw.receive_batch(port, [(b"", udp(1, 2, sport=1000 + i)) for i in range(n)], now)


def test_frames_for_a_waiting_port_are_held_and_sent_when_its_link_comes_up() -> None:
    sw, _, b = pair(wait=True)
    send(sw, 3, now=10.0)
    port = sw.port_by_name("b")
    assert port is not None and not port.live and len(port.held) == 3 and b.frames() == []
    b.up = True
    sw.now = 10.05
    sw.set_link(port, True)
    assert [f[34:36] for f in b.frames()] == [(1000 + i).to_bytes(2, "big") for i in range(3)]
    assert port.held == [] and port.stats.tx_packets == 3 and "port_down" not in sw.drops


def test_held_frames_expire_and_are_counted() -> None:
    sw, _, b = pair(wait=True)
    send(sw, 2, now=10.0)
    port = sw.port_by_name("b")
    assert port is not None
    sw.tick(10.0 + HOLD_TIME + 0.1)  # the timer drops what waited too long
    assert port.held == [] and sw.drops["held_too_long"] == 2
    send(sw, 1, now=20.0)
    sw.now = 20.0 + HOLD_TIME + 0.5
    sw.set_link(port, True)  # released too late: dropped, not sent
    assert b.frames() == [] and sw.drops["held_too_long"] == 3


def test_without_wait_a_down_port_drops() -> None:
    sw, _, _ = pair(wait=False)
    send(sw, 2, now=1.0)
    port = sw.port_by_name("b")
    assert port is not None and port.held == [] and sw.drops["port_down"] == 2


def test_a_missing_device_is_refused_unless_the_port_waits_for_it() -> None:
    r = Runner(Switch("r", fail_mode="secure"))
    with pytest.raises(SwitchError, match="vnetnosuch0"):
        r.add_port(parse_port_spec("vnetnosuch0"))
    port = r.add_port(parse_port_spec("vnetnosuch0,wait=true"))
    assert not port.live and port.config.wait
    assert r.switch.port_by_name("vnetnosuch0") is port
