"""Switches under test between two network namespaces, shared by the root benchmarks.

A rig is two namespaces, a and b (10.88.0.1 and 10.88.0.2), each joined by a
veth pair to one switch under test: the vnet switch, Open vSwitch's
userspace datapath (`datapath_type=netdev`, a private ovsdb-server and
ovs-vswitchd from `vnet.testing.ovs`), or a Linux bridge.  Several rigs are
built side by side and take turns (`rotate`), because the machine's speed
drifts by more than the differences measured; each figure is the median of
its rounds.

The loads: 64-byte UDP frames from a to a bound UDP socket in b that never
reads (a discard sink: the kernel drops each datagram at the full socket
instead of answering it with an ICMP port-unreachable, work that would land
on the switch's transmit path), either flooded by trafgen (netsniff-ng)
faster than any of the switches forwards -- one flow, or 1,000 (source ports
1000-1999 in turn) -- or sent by one application's UDP socket (a Python
`sendto` loop); and TCP, one iperf3 stream.  Frames are counted by the
namespaces' interfaces, and the switch's CPU time (utime + stime of its
process, every thread) is read from /proc beside them, so a figure can be
turned into switch CPU per packet even when the switch is not the
bottleneck.

Everything is started through a `vnet.testing.netns.Lab`: processes are
stopped by the PID started here and namespaces removed when the rig's block
ends, also on failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnet.datapath.control import request
from vnet.ofp.client import OFClient
from vnet.ofp.convert import flow_mod_to_ofp
from vnet.pipeline.ofctl import parse_flow
from vnet.testing.netns import Lab, run, wait_for
from vnet.testing.ovs import ovs_netdev_bridge

A, B = "10.88.0.1", "10.88.0.2"
_ports = itertools.count()
_TICK = os.sysconf("SC_CLK_TCK")

# what each small-packet load is called, and trafgen's source port for it (None: a UDP socket)
LOADS = {
    "64-byte UDP flood (trafgen), 1 flow": "4000",
    "64-byte UDP flood, 1,000 flows": "dinc(1000, 1999)",
    "64-byte UDP from one UDP socket": None,
}

FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
end, n, data, dst = time.monotonic() + float(sys.argv[1]), 0, bytes(18), ("10.88.0.2", 9)
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.sendto(data, dst)
            n += 1
        except BlockingIOError:
            pass
print(n)
"""

SINK = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("10.88.0.2", 9))
time.sleep(3600)
"""

# trafgen (netsniff-ng): one worker, leaving the system's socket memory and IRQ affinity alone
TRAFGEN = ("trafgen", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats", "--cpus", "1")


@dataclass
class Topo:
    """Namespaces a and b, the switch-side veth ends pa and pb, and the namespace ends ea, eb."""

    a: str
    b: str
    pa: str
    pb: str
    ea: str
    eb: str


def topo(lab: Lab, offloads: bool = True) -> Topo:
    """The two namespaces; with `offloads` False, transmit checksum offload, TSO and GSO
    are off at the namespace ends (what Open vSwitch's userspace datapath needs to
    forward TCP at all, and its tracker to accept a packet)."""
    a, b = lab.ns("ba"), lab.ns("bb")
    pa, ea = lab.veth("xa", a, [f"{A}/24"])
    pb, eb = lab.veth("xb", b, [f"{B}/24"])
    if not offloads:
        for ns, dev in ((a, ea), (b, eb)):
            lab.exec(ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off")
    return Topo(a, b, pa, pb, ea, eb)


def sysfs(lab: Lab, ns: str, dev: str, attr: str) -> str:
    return lab.exec(ns, "cat", f"/sys/class/net/{dev}/{attr}").stdout.strip()


def cpu_seconds(pid: int | None) -> float:
    """CPU time a process has used so far (user + system, all its threads)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def iperf(lab: Lab, a: str, b: str, seconds: float, *args: str) -> dict[str, Any] | None:
    """One iperf3 test against a one-off server; None if it stalled."""
    port = str(5201 + next(_ports) % 100)
    srv = lab.spawn("iperf3", "-s", "-1", "-p", port, "-B", B, ns=b)
    wait_for(
        lambda: f":{port}" in lab.exec(b, "ss", "-ltn", check=False).stdout, 10, "iperf3 server"
    )
    try:
        r = lab.exec(
            a, "iperf3", "-c", B, "-p", port, "-t", str(seconds), "-J", *args,
            timeout=seconds + 15,
        )  # fmt: skip
        return dict(json.loads(r.stdout)["end"])
    except (subprocess.TimeoutExpired, RuntimeError, KeyError, ValueError):
        return None
    finally:
        if srv.poll() is None:
            srv.kill()


@dataclass
class Counted:
    """Interface counters of both namespace ends and the switch's CPU time, at one moment."""

    a_tx: int
    a_rx: int
    b_tx: int
    b_rx: int
    cpu: float
    at: float


@dataclass
class Rig:
    """One switch under test, its two namespaces, and what was measured through it.

    Per load, each round appends: the rates sent (a's interface) and received
    (b's), in kpps, and the switch's CPU share (1.0 = one core busy)."""

    lab: Lab
    t: Topo
    pid: int | None = None  # the switch's process, for its CPU time
    report: Callable[[], dict[str, float]] = lambda: {}
    ct_size: Callable[[], int] = lambda: 0  # connections in the switch's tracker
    ct_stats: Callable[[], str] = lambda: ""  # the tracker's own summary, as it prints it
    sent: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    got: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    tcp_gbps: list[float] = field(default_factory=list)
    tcp_kpps: list[float] = field(default_factory=list)  # frames both ways, as delivered
    tcp_cpu: list[float] = field(default_factory=list)
    eth: str = ""  # trafgen's Ethernet header: a's end to b's

    def ready(self) -> None:
        """Learn the MACs, note trafgen's header and start b's UDP sink."""
        lab, t = self.lab, self.t
        self.eth = (
            f"eth(da={sysfs(lab, t.b, t.eb, 'address')}, sa={sysfs(lab, t.a, t.ea, 'address')})"
        )
        lab.exec(t.a, "ping", "-c", "2", "-i", "0.2", "-W", "1", B, check=False)
        lab.spawn(sys.executable, "-c", SINK, ns=t.b)
        wait_for(lambda: ":9 " in lab.exec(t.b, "ss", "-lun", check=False).stdout, 10, "UDP sink")

    def counted(self) -> Counted:
        lab, t = self.lab, self.t

        def n(ns: str, dev: str, what: str) -> int:
            return int(sysfs(lab, ns, dev, f"statistics/{what}_packets"))

        return Counted(
            n(t.a, t.ea, "tx"), n(t.a, t.ea, "rx"), n(t.b, t.eb, "tx"), n(t.b, t.eb, "rx"),
            cpu_seconds(self.pid), time.monotonic(),
        )  # fmt: skip

    def flood(self, load: str, seconds: float) -> None:
        """One round of 64-byte frames from a to b's sink: sent as counted by a's
        interface, received as counted by b's."""
        c0 = self.counted()
        sport = LOADS[load]
        if sport is None:
            self.lab.exec(self.t.a, sys.executable, "-c", FLOOD, str(seconds),
                          timeout=seconds + 30)  # fmt: skip
        else:
            self._trafgen(seconds, sport)
        time.sleep(0.3)  # the switch's queues drain
        c1 = self.counted()
        self.sent[load].append((c1.a_tx - c0.a_tx) / seconds / 1e3)
        self.got[load].append((c1.b_rx - c0.b_rx) / seconds / 1e3)
        self.cpu[load].append((c1.cpu - c0.cpu) / (c1.at - c0.at))

    def _trafgen(self, seconds: float, sport: str) -> None:
        """The generator floods from a's end for `seconds`; SIGINT to the process group
        started here (trafgen forks its worker) stops it and its worker."""
        lab, t = self.lab, self.t
        frame = (
            f"{{ {self.eth}, ipv4(sa={A}, da={B}, ttl=64),"
            f" udp(sp={sport}, dp=9), fill(0, 18) }}"
        )  # 60 bytes, 64 on the wire with the FCS, valid checksums
        p = lab.spawn(*TRAFGEN, "--dev", t.ea, frame, ns=t.a)
        try:
            time.sleep(seconds)
            if p.poll() is not None:
                raise RuntimeError(f"trafgen exited early ({p.returncode})")
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(10)

    def tcp(self, seconds: float) -> None:
        """One iperf3 stream from a to b: Gbit/s, frames delivered both ways, switch CPU."""
        c0 = self.counted()
        r = iperf(self.lab, self.t.a, self.t.b, seconds)
        c1 = self.counted()
        self.tcp_gbps.append(0.0 if r is None else r["sum_received"]["bits_per_second"] / 1e9)
        frames = c1.a_rx - c0.a_rx + c1.b_rx - c0.b_rx
        self.tcp_kpps.append(frames / seconds / 1e3)
        self.tcp_cpu.append((c1.cpu - c0.cpu) / (c1.at - c0.at))


def add_flows_vnet(mgmt: str, flows: Sequence[str]) -> None:
    with OFClient("unix:" + mgmt) as c:
        c.transact(*[flow_mod_to_ofp(parse_flow(f).flow) for f in flows])


@contextlib.contextmanager
def vnet_switch(flows: Sequence[str] | None = None, offloads: bool = True) -> Iterator[Rig]:
    """A vnet switch between the namespaces: MAC learning (`normal`) when `flows` is
    None, else fail-mode secure with `flows` installed."""
    with Lab() as lab, tempfile.TemporaryDirectory() as d:
        t = topo(lab, offloads)
        name = lab.name("vb")
        mode = ["--fail-mode", "secure"] if flows is not None else []
        proc = lab.spawn(
            sys.executable, "-m", "vnet", "switch", "run", "--name", name, "--no-internal",
            "--port", f"{t.pa},port_security=false", "--port", f"{t.pb},port_security=false", *mode,
            env={"VNET_RUNDIR": d}, log=Path(d) / "sw.log",
        )  # fmt: skip
        ctl = os.path.join(d, f"{name}.ctl")
        wait_for(lambda: os.path.exists(ctl), 20, "vnet switch")
        if flows is not None:
            add_flows_vnet(os.path.join(d, f"{name}.mgmt"), flows)

        def report() -> dict[str, float]:
            time.sleep(1.2)  # one tick: kernel socket drops are read once a second
            show = request(ctl, "show")
            rx = sum(p["stats"]["rx_packets"] for p in show["ports"])
            tx = sum(p["stats"]["tx_packets"] for p in show["ports"])
            kernel = show["drops"].get("rx_socket_full", 0)
            dropped = sum(show["drops"].values()) - kernel
            print(f"    vnet drops: {show['drops'] or 'none'}; rx {rx} = tx {tx} + dropped {dropped} "
                  f"(+{kernel} dropped by the kernel before the switch read them)")  # fmt: skip
            return {"unaccounted": rx - tx - dropped}

        def ct_size() -> int:
            return int(request(ctl, "ct-stats")["connections"])

        def ct_stats() -> str:
            return f"by state {request(ctl, 'ct-stats')['by_state']}"

        yield Rig(lab, t, proc.pid, report, ct_size, ct_stats)


@contextlib.contextmanager
def ovs_switch(flows: Sequence[str] | None = None, offloads: bool = True) -> Iterator[Rig]:
    """Open vSwitch netdev between the namespaces: `normal` (fail-mode standalone) when
    `flows` is None, else fail-mode secure with `flows` installed."""
    with Lab() as lab, tempfile.TemporaryDirectory() as d:
        t = topo(lab, offloads)
        mode = "secure" if flows is not None else "standalone"
        target = ovs_netdev_bridge(lab, Path(d), [t.pa, t.pb], fail_mode=mode)
        if flows is not None:
            f = Path(d) / "flows"
            f.write_text("\n".join(flows) + "\n")
            run("ovs-ofctl", "-O", "OpenFlow13", "add-flows", target, str(f))
        pid = next(p.pid for p in lab.procs if "ovs-vswitchd" in p.args)

        def ct_stats() -> str:
            return run("ovs-appctl", "-t", f"{d}/vswitchd.ctl", "dpctl/ct-stats-show").stdout

        def ct_size() -> int:
            for line in ct_stats().splitlines():
                if line.strip().startswith("Total:"):
                    return int(line.split(":")[1])
            return 0

        yield Rig(lab, t, pid, ct_size=ct_size, ct_stats=ct_stats)


@contextlib.contextmanager
def linux_bridge(offloads: bool = True) -> Iterator[Rig]:
    with Lab() as lab:
        t = topo(lab, offloads)
        br = lab.name("lb")
        run("ip", "link", "add", br, "type", "bridge")

        def remove() -> None:
            run("ip", "link", "del", br, check=False)

        lab.defer(remove)
        for p in (t.pa, t.pb):
            run("ip", "link", "set", p, "master", br)
        run("ip", "link", "set", br, "up")
        yield Rig(lab, t)


def rotate(rigs: dict[str, Rig], rounds: int, fn: Callable[[Rig], None]) -> None:
    """`fn` on every rig, `rounds` times, each round starting one rig further on."""
    names = list(rigs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn(rigs[name])


def ratio(v: list[float], p: list[float]) -> str:
    """median(v)/median(p), and the spread of the round-by-round ratios."""
    each = [x / max(y, 1e-9) for x, y in zip(v, p, strict=True)]
    median = statistics.median(v) / max(statistics.median(p), 1e-9)
    return f"{median:.2f}x (round by round {min(each):.2f}-{max(each):.2f}x)"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so every rig's cleanup runs."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
