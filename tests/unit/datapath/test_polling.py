"""The runner polls a port with a backlog instead of waiting for its readiness events.

A device whose descriptor is always readable (a byte left in a socket pair)
and whose frames come from a queue: while a backlog is drained the
descriptor must be out of the event loop, every frame must still reach the
other port in order, and once the queue is empty the descriptor is watched
again.  A port unwatched while polled is left alone.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import pytest

from vnet.datapath import Switch, parse_port_spec
from vnet.datapath.port import Port
from vnet.datapath.ports.memory import MemoryDevice
from vnet.datapath.runner import BATCH, POLL_GRACE, Runner
from vnet.pipeline import parse_flow
from vnet.pipeline.flow import FlowMod, FlowModCommand

from .conftest import udp


class ReadyDevice(MemoryDevice):
    """A memory device with a descriptor that epoll always reports readable."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.r, self.w = socket.socketpair()
        self.w.send(b"!")  # never read: level-triggered readiness stays on
        self.readiness = 0  # readiness callbacks so far
        self.reads: list[tuple[int, int]] = []  # (readiness callbacks so far, frames read)
        self.on_read: Callable[[], None] | None = None

    def fileno(self) -> int | None:
        return self.r.fileno()

    def recv_batch(self, limit: int) -> list[tuple[bytes, bytes]]:
        got = super().recv_batch(limit)
        self.reads.append((self.readiness, len(got)))
        if self.on_read is not None:
            self.on_read()
        return got


Rig = tuple[asyncio.AbstractEventLoop, Runner, Port, ReadyDevice, MemoryDevice]


class Clock:
    """Time that moves on by `step` each time it is read."""

    def __init__(self, step: float) -> None:
        self.t = 100.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock(2 * POLL_GRACE)  # every empty poll is past the grace period


@pytest.fixture
def rig(clock: Clock) -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    sw = Switch("p", fail_mode="secure")
    a, b = ReadyDevice("a"), MemoryDevice("b")
    pa = sw.add_port(parse_port_spec("a,port_security=false", kind="memory"), a)
    sw.add_port(parse_port_spec("b,port_security=false", kind="memory"), b)
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow("in_port=1,actions=output:2").flow)])
    runner = Runner(sw, clock=clock)
    runner.loop = loop
    readable = runner._readable

    def counted(port: Port) -> None:
        a.readiness += 1
        readable(port)

    runner._readable = counted  # type: ignore[method-assign]
    runner._watch(pa)
    try:
        yield loop, runner, pa, a, b
    finally:
        runner._unwatch(pa)
        loop.close()
        a.r.close()
        a.w.close()


def turn(loop: asyncio.AbstractEventLoop, n: int = 1) -> None:
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))


def sports(frames: list[bytes]) -> list[int]:
    return [int.from_bytes(f[34:36], "big") for f in frames]


def test_a_backlog_is_polled_with_readiness_off_then_watched_again(rig: Rig) -> None:
    loop, _runner, _pa, a, b = rig
    total = 3 * BATCH + 10
    a.inbox.extend((b"", udp(1, 2, sport=1000 + i)) for i in range(total))
    turn(loop, 10)
    assert sports(b.frames()) == list(range(1000, 1000 + total))
    # one readiness event, then polls until one found nothing (time is past the grace)
    assert a.reads[:5] == [(1, BATCH), (1, BATCH), (1, BATCH), (1, 10), (1, 0)]
    # watched again: the (always readable) descriptor is reported once more
    assert len(a.reads) > 5 and a.reads[5] == (2, 0)
    fd = a.fileno()
    assert fd is not None and loop.remove_reader(fd) is True


def test_a_small_batch_keeps_the_port_on_readiness_events(rig: Rig) -> None:
    loop, _runner, _pa, a, b = rig
    a.inbox.extend((b"", udp(1, 2, sport=2000 + i)) for i in range(5))
    turn(loop, 3)
    assert sports(b.frames()) == list(range(2000, 2005))
    # every read came from its own readiness event: nothing was polled
    assert [r for r, _ in a.reads] == list(range(1, len(a.reads) + 1))


def test_a_port_unwatched_while_polled_is_not_polled_further(rig: Rig) -> None:
    loop, runner, pa, a, b = rig
    a.inbox.extend((b"", udp(1, 2, sport=3000 + i)) for i in range(10 * BATCH))
    # unwatched from another callback, with the next poll already queued
    a.on_read = lambda: loop.call_soon(runner._unwatch, pa) if len(a.reads) == 2 else None
    turn(loop, 10)
    assert len(a.reads) == 2 and len(b.frames()) == 2 * BATCH  # the poll after is void
    fd = a.fileno()
    assert fd is not None and loop.remove_reader(fd) is False
    a.on_read = None
    runner._watch(pa)  # watched again: readiness, a full batch, polling to the end
    turn(loop, 20)
    assert not a.inbox and len(b.frames()) == 8 * BATCH
    assert [n for _, n in a.reads[2:11]] == [BATCH] * 8 + [0]


def test_an_empty_poll_within_the_grace_period_keeps_polling(rig: Rig, clock: Clock) -> None:
    loop, _runner, _pa, a, b = rig
    clock.step = POLL_GRACE / 4  # each clock read a quarter of the grace period later
    a.inbox.extend((b"", udp(1, 2, sport=4000 + i)) for i in range(BATCH + 3))

    def refill() -> None:  # frames arrive again after the first empty poll
        if a.reads[-1][1] == 0 and len(a.reads) == 3:
            a.inbox.extend((b"", udp(1, 2, sport=5000 + i)) for i in range(7))

    a.on_read = refill
    turn(loop, 20)
    assert sports(b.frames()) == list(range(4000, 4000 + BATCH + 3)) + list(range(5000, 5007))
    # 64, 3, then empty, and the refill taken by the next poll: no readiness event between
    assert a.reads[:4] == [(1, BATCH), (1, 3), (1, 0), (1, 7)]
    empty = [n for r, n in a.reads[4:] if r == 1]
    assert len(empty) >= 2 and not any(empty)  # polled on, empty, for the grace period
    assert a.reads[4 + len(empty)][0] == 2  # then readiness again
