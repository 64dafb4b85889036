"""The controller connection's liveness: Open vSwitch's inactivity probe, on loopback.

A fake controller listens on 127.0.0.1; the agent (its own event loop in a
thread, probe interval 0.2 s) dials it.  Anything the controller sends is a
sign of life; only a controller silent for a probe interval after an echo
request is dropped, and every connect and disconnect is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from vnet.datapath import Switch
from vnet.datapath.switch import PacketIn
from vnet.ofp.agent import Agent
from vnet.packet import extract

from .agent_thread import agent_thread

PROBE = 0.2
HDR = struct.Struct("!BBHI")


def msg(mtype: int, xid: int = 0, body: bytes = b"") -> bytes:
    return HDR.pack(4, mtype, 8 + len(body), xid) + body


class Controller:
    """One accepted connection; `answer_echo` decides whether echo requests get replies."""

    def __init__(self, answer_echo: bool, rcvbuf: int | None = None) -> None:
        self.lsock = socket.socket()
        if rcvbuf is not None:  # inherited by the accepted socket: a controller slow to read
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.answer_echo = answer_echo
        self.echo_requests: list[float] = []
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()

    def accept(self) -> socket.socket:
        self.lsock.settimeout(5)
        s, _ = self.lsock.accept()
        self.conns.append(s)
        s.sendall(msg(ofp.OFPT_HELLO))
        return s

    def serve_echo(self, s: socket.socket) -> None:
        """Read everything; answer echo requests if told to (a thread)."""
        buf = b""
        s.settimeout(0.05)
        while not self.stop.is_set():
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 8:
                _, mtype, length, xid = HDR.unpack_from(buf)
                if len(buf) < length:
                    break
                body, buf = buf[8:length], buf[length:]
                if mtype == ofp.OFPT_ECHO_REQUEST:
                    self.echo_requests.append(time.monotonic())
                    if self.answer_echo:
                        s.sendall(msg(ofp.OFPT_ECHO_REPLY, xid, body))

    def close(self) -> None:
        self.stop.set()
        for s in [*self.conns, self.lsock]:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def rig() -> Iterator[Callable[[Controller], tuple[Agent, asyncio.AbstractEventLoop]]]:
    with contextlib.ExitStack() as stack:

        def make(ctl: Controller) -> tuple[Agent, asyncio.AbstractEventLoop]:
            sw = Switch("probe", fail_mode="secure")
            agent = Agent(sw, controllers=[f"tcp:127.0.0.1:{ctl.port}"], probe=PROBE)
            stack.callback(ctl.close)  # after the agent stopped (callbacks run in reverse)
            return agent, stack.enter_context(agent_thread(agent))

        yield make


def wait_connected(agent: Agent) -> None:
    deadline = time.monotonic() + 5
    while agent.connects < 1:
        assert time.monotonic() < deadline, "the switch never connected"
        time.sleep(0.01)


def test_any_message_is_a_sign_of_life_under_a_packet_in_flood(
    rig: Callable[[Controller], tuple[Agent, asyncio.AbstractEventLoop]],
) -> None:
    """Echo replies withheld, the controller busy sending requests and slow to read the
    switch's packet-ins: a live controller, and the switch must stay with it."""
    ctl = Controller(answer_echo=False, rcvbuf=4096)
    agent, loop = rig(ctl)
    s = ctl.accept()
    wait_connected(agent)
    frame = bytes(60000)
    pi = PacketIn("action", 0, 0, extract(frame, 1), frame, len(frame), 0xFFFF)

    def flood() -> None:
        if agent.connections:
            agent.packet_in(pi)
        loop.call_later(0.003, flood)

    loop.call_soon_threadsafe(flood)
    end = time.monotonic() + 8 * PROBE
    xid = 0
    while time.monotonic() < end:
        xid += 1
        s.sendall(msg(ofp.OFPT_BARRIER_REQUEST, xid))
        time.sleep(PROBE / 4)
    st = agent.status()["openflow"]
    assert (st["connects"], st["disconnects"]) == (1, 0), st["last_disconnect"]
    assert len(st["connections"]) == 1 and st["connections"][0]["last_heard"] < PROBE


def test_a_loop_held_up_asks_before_it_gives_up(
    rig: Callable[[Controller], tuple[Agent, asyncio.AbstractEventLoop]],
) -> None:
    """A controller that answers echoes, and a switch whose loop was busy for three
    probe intervals: the switch asks once it runs again, and stays connected."""
    ctl = Controller(answer_echo=True)
    agent, loop = rig(ctl)
    s = ctl.accept()
    threading.Thread(target=ctl.serve_echo, args=(s,), daemon=True).start()
    wait_connected(agent)
    time.sleep(2 * PROBE)
    assert ctl.echo_requests, "an idle connection is probed"
    held = time.monotonic()
    loop.call_soon_threadsafe(time.sleep, 3 * PROBE)  # the loop does nothing else meanwhile
    time.sleep(3 * PROBE + 4 * PROBE)
    st = agent.status()["openflow"]
    assert (st["connects"], st["disconnects"]) == (1, 0), st["last_disconnect"]
    assert any(t > held + 3 * PROBE for t in ctl.echo_requests)


def test_a_silent_controller_is_dropped_and_the_flap_counted(
    rig: Callable[[Controller], tuple[Agent, asyncio.AbstractEventLoop]],
) -> None:
    ctl = Controller(answer_echo=False)
    agent, _loop = rig(ctl)
    s = ctl.accept()
    threading.Thread(target=ctl.serve_echo, args=(s,), daemon=True).start()
    wait_connected(agent)
    start = time.monotonic()
    deadline = start + 10 * PROBE
    while agent.disconnects < 1:
        assert time.monotonic() < deadline, "a silent controller is never dropped"
        time.sleep(0.01)
    took = time.monotonic() - start
    # an echo request after one silent interval, the disconnect one interval later
    assert 2 * PROBE * 0.9 <= took <= 2 * PROBE + 0.5, took
    assert len(ctl.echo_requests) == 1
    last = agent.status()["openflow"]["last_disconnect"]
    assert last["controller"] == f"tcp:127.0.0.1:{ctl.port}"
    assert "echo request unanswered" in last["reason"]
    # it dials again (back-off 1 s): a second connect
    ctl.accept()
    deadline = time.monotonic() + 5
    while agent.connects < 2:
        assert time.monotonic() < deadline, "the switch did not reconnect"
        time.sleep(0.01)


def test_a_dead_controller_is_dropped_even_with_a_full_write_buffer(
    rig: Callable[[Controller], tuple[Agent, asyncio.AbstractEventLoop]],
) -> None:
    """Nothing read, nothing sent: the queued packet-ins do not keep it connected."""
    ctl = Controller(answer_echo=False, rcvbuf=4096)
    agent, loop = rig(ctl)
    ctl.accept()
    wait_connected(agent)
    frame = bytes(60000)
    pi = PacketIn("action", 0, 0, extract(frame, 1), frame, len(frame), 0xFFFF)
    for _ in range(100):  # 6 MB: beyond the kernel's buffers and the write high-water mark
        loop.call_soon_threadsafe(agent.packet_in, pi)
    deadline = time.monotonic() + 2 * PROBE + 1.0
    while agent.disconnects < 1:
        assert time.monotonic() < deadline, agent.status()
        time.sleep(0.01)
    assert "echo request unanswered" in agent.status()["openflow"]["last_disconnect"]["reason"]
