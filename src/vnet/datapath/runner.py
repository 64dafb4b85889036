"""Running a switch: devices opened, readiness events, timers, link changes.

This is the shell around `Switch`: it opens the device for each port
(AF_PACKET for a netdev, a persistent TAP for a VM, the switch's own TAP for
the internal port, a queue for an in-memory port, the underlay sockets of a
tunnel port), registers each file
descriptor with the asyncio event loop (epoll underneath), and on readiness
drains up to `BATCH` frames into `Switch.receive_batch` with one clock read.

A port that yields a full batch has a backlog: as Linux's NAPI does with
interrupts, its readiness events are turned off (the descriptor leaves
epoll) and the loop polls it, a batch per turn, until it has found nothing
for `POLL_GRACE` (half a millisecond); then it is watched again.  While it
is polled the kernel wakes nobody for each frame it queues -- on the
sending CPU that wake-up (and the switch's going back to sleep right after)
costs as much as a tenth of what sending the frame costs, and a switch that
keeps up with its senders would otherwise sleep between most frames.

Link state comes from the kernel's rtnetlink link group (RTM_NEWLINK /
RTM_DELLINK, decoded with pyroute2's message classes): a port whose device
goes down or disappears goes down (PORT_STATUS to controllers), its reader
is removed, and it comes back -- the device reopened -- when the device
returns.  Nothing here raises into the loop on a vanished device.

A timer ticks once a second: MAC aging, flow timeouts (FLOW_REMOVED through
`on_flows_removed`) and the kernel's own drop counters per socket.
Another runs the switch's BFD sessions (`vnet.datapath.bfd.Monitor`): it
sleeps until the next control packet or detection deadline is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from ..pipeline.flow import Rule
from .port import Device, Port, PortConfig
from .ports.af_packet import AfPacketDevice, DeviceGone, set_up
from .ports.memory import MemoryDevice
from .ports.tap import TapDevice, create_vm_tap, remove_tap
from .ports.tunnel import TunnelDevice
from .switch import Switch, SwitchError

__all__ = ["BATCH", "Runner", "open_device"]

log = logging.getLogger("vnet.switch")
BATCH = 64
POLL_GRACE = 0.0005  # seconds a polled port may stay empty before it is watched again
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000


def open_device(cfg: PortConfig, switch_name: str) -> Device:
    if cfg.kind == "memory":
        return MemoryDevice(cfg.name)
    if cfg.tunnel:
        return TunnelDevice(cfg.name, cfg.kind, cfg.local_ip or 0)
    if cfg.kind == "internal":
        return TapDevice(cfg.name)
    if cfg.kind == "tap":
        with contextlib.suppress(OSError):
            create_vm_tap(cfg.name)
    with contextlib.suppress(OSError):
        set_up(cfg.name)
    return AfPacketDevice(cfg.name)


def _absent(name: str) -> MemoryDevice:
    """A placeholder for a port's device until it (re)appears: down, sends nothing."""
    dev = MemoryDevice(name)
    dev.up = False
    dev.closed = True
    return dev


class _Polling:
    """One run of polling a port (its identity tells a stale callback), and when a
    poll last found frames."""

    __slots__ = ("busy",)

    def __init__(self, now: float) -> None:
        self.busy = now


class Runner:
    def __init__(self, switch: Switch, clock: Callable[[], float] = time.monotonic) -> None:
        self.switch = switch
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_flows_removed: Callable[[list[tuple[Rule, str]]], None] | None = None
        self._readers: dict[int, int] = {}  # port_no -> fd
        self._polled: dict[int, _Polling] = {}  # port_no -> its polling run
        self._nl: socket.socket | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._bfd_task: asyncio.Task[None] | None = None
        self._created_taps: set[str] = set()

    # -- ports --------------------------------------------------------------------------
    def add_port(self, cfg: PortConfig) -> Port:
        if self.switch.port_by_name(cfg.name) is not None:
            raise SwitchError(f"port {cfg.name!r} already exists on {self.switch.name}")
        try:
            dev = open_device(cfg, self.switch.name)
        except DeviceGone as e:
            if not (cfg.wait and cfg.kind == "netdev"):
                raise SwitchError(f"port {cfg.name!r}: {e.strerror}") from None
            port = self.switch.add_port(cfg, _absent(cfg.name))
            self.switch.set_link(port, False)
            log.info("%s: waiting for its device", cfg.name)
            return port
        except OSError as e:
            raise SwitchError(f"port {cfg.name!r}: {e.strerror or e}") from None
        if cfg.kind == "tap":
            self._created_taps.add(cfg.name)
        port = self.switch.add_port(cfg, dev)
        self._watch(port)
        return port

    def del_port(self, name: str) -> Port:
        port = self.switch.port_by_name(name)
        if port is None:
            raise SwitchError(f"no port {name!r} on {self.switch.name}")
        self._unwatch(port)
        self.switch.del_port(name)
        if name in self._created_taps:
            self._created_taps.discard(name)
            remove_tap(name)
        return port

    def _watch(self, port: Port) -> None:
        fd = port.device.fileno()
        if fd is None or self.loop is None or port.port_no in self._readers:
            return
        self.loop.add_reader(fd, self._readable, port)
        self._readers[port.port_no] = fd

    def _unwatch(self, port: Port) -> None:
        fd = self._readers.pop(port.port_no, None)
        if self._polled.pop(port.port_no, None) is not None:
            return  # being polled: its descriptor is out of epoll already
        if fd is not None and self.loop is not None:
            self.loop.remove_reader(fd)

    def _readable(self, port: Port) -> None:
        if self._drain(port) < BATCH or self.loop is None:
            return
        fd = self._readers.get(port.port_no)
        if fd is None or port.port_no in self._polled:
            return
        self.loop.remove_reader(fd)  # a backlog: poll instead of waiting for readiness
        run = self._polled[port.port_no] = _Polling(self.clock())
        self.loop.call_soon(self._poll, port, run)

    def _poll(self, port: Port, run: _Polling) -> None:
        if self._polled.get(port.port_no) is not run or self.loop is None:
            return  # unwatched (and maybe watched again) meanwhile
        n = self._drain(port)
        if self._polled.get(port.port_no) is not run:
            return  # its device went away while draining
        now = self.clock()
        if n:
            run.busy = now
        if now - run.busy < POLL_GRACE:
            self.loop.call_soon(self._poll, port, run)
            return
        del self._polled[port.port_no]
        fd = self._readers.get(port.port_no)
        if fd is not None:  # level-triggered: a frame that came in meanwhile is reported
            self.loop.add_reader(fd, self._readable, port)

    def _drain(self, port: Port) -> int:
        """Up to BATCH frames from the port's device into the switch; how many."""
        dev = port.device
        tunnel = isinstance(dev, TunnelDevice)  # underlay packets, decapsulated by the switch
        try:
            got: list[Any] = cast(
                list[Any],
                dev.recv_raw(BATCH) if isinstance(dev, TunnelDevice) else dev.recv_batch(BATCH),
            )
        except DeviceGone:
            self._device_gone(port)
            return 0
        except OSError as e:
            port.stats.rx_errors += 1
            log.warning("%s: receive error: %s", port.name, e)
            return 0
        if not got:
            return 0
        if tunnel:
            self.switch.receive_tunnel_batch(port, got, self.clock())
        else:
            self.switch.receive_batch(port, got, self.clock())
        return len(got)

    def _device_gone(self, port: Port) -> None:
        self._unwatch(port)
        self.switch.set_link(port, False)
        port.device.close()
        port.device = _absent(port.name)
        self.switch.pipeline.invalidate()
        log.warning("%s: device disappeared; port down", port.name)

    def _device_back(self, port: Port) -> None:
        try:
            dev = open_device(port.config, self.switch.name)
        except OSError:
            return
        port.device = dev
        self.switch.pipeline.invalidate()  # cached sends hold the old device
        self._watch(port)
        self.switch.set_link(port, dev.link_up())
        log.info("%s: device is back", port.name)

    # -- link state ---------------------------------------------------------------------
    def _open_netlink(self) -> None:
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            s.bind((0, RTMGRP_LINK))
            s.setblocking(False)
        except OSError as e:
            log.warning("no link monitoring: %s", e)
            return
        self._nl = s
        assert self.loop is not None
        self.loop.add_reader(s.fileno(), self._netlink_readable)

    def _netlink_readable(self) -> None:
        assert self._nl is not None
        while True:
            try:
                data = self._nl.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                return
            off = 0
            while off + 16 <= len(data):
                length = int.from_bytes(data[off : off + 4], "little")
                kind = int.from_bytes(data[off + 4 : off + 6], "little")
                if length < 16:
                    break
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    msg = ifinfmsg(data[off : off + length])
                    msg.decode()
                    self._link_event(kind, msg.get_attr("IFLA_IFNAME"), msg["flags"])
                off += (length + 3) & ~3

    def _link_event(self, kind: int, name: str | None, flags: int) -> None:
        if name is None:
            return
        port = self.switch.port_by_name(name)
        if port is None:
            return
        self.switch.now = self.clock()
        if kind == RTM_DELLINK:
            if port.port_no in self._readers or port.link_up:
                self._device_gone(port)
            return
        if port.port_no not in self._readers and port.config.kind != "memory":
            self._device_back(port)
            return
        self.switch.set_link(port, bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP))

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for port in self.switch.ports.values():
            self._watch(port)
        self._open_netlink()
        self._tick_task = asyncio.create_task(self._ticker())
        self._bfd_task = asyncio.create_task(self._bfd_timer())

    async def _bfd_timer(self) -> None:
        """BFD sessions: sent and expired when due, woken early when a session needs it."""
        mon = self.switch.bfd
        ready = asyncio.Event()
        mon.wake = ready.set
        while True:
            ready.clear()
            mon.run(self.clock())
            due = mon.next_wake()
            wait = 1.0 if due is None else min(max(due - self.clock(), 0.0), 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), wait)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick()

    def tick(self) -> None:
        removed = self.switch.tick(self.clock())
        if removed and self.on_flows_removed:
            self.on_flows_removed(removed)
        for port in self.switch.ports.values():
            stats = getattr(port.device, "stats", None)
            if stats is None:
                continue
            with contextlib.suppress(OSError):
                _, drops = stats()
                if drops:
                    port.stats.rx_dropped += drops
                    self.switch.drop("rx_socket_full", drops)

    def close(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        if self._bfd_task is not None:
            self._bfd_task.cancel()
        for port in list(self.switch.ports.values()):
            self._unwatch(port)
            port.device.close()
            if port.name in self._created_taps:
                remove_tap(port.name)
        if self._nl is not None:
            if self.loop is not None:
                self.loop.remove_reader(self._nl.fileno())
            self._nl.close()
