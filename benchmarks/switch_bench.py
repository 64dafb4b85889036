"""vnet switch vs Open vSwitch (userspace, datapath_type=netdev) vs the Linux bridge.

One run builds the same topology three times side by side -- two network
namespaces, each joined by a veth pair to the switch under test -- and
measures, with the namespace ends on their default offloads:

* small packets: 64-byte UDP frames (18-byte payloads) to a bound UDP socket
  that never reads (a discard sink: the receiving kernel drops each datagram
  at the full socket, instead of answering it with an ICMP port-unreachable
  -- work that would land on whatever transmits into the receiving veth,
  i.e. on the switch under test), counted by the receiving interface:
  packets per second.  Three loads: trafgen (netsniff-ng's generator, from
  a's end through a transmit ring) flooding as fast as it can, which is
  faster than any of the switches forwards, so the figure is the switch's
  forwarding rate -- with one flow, then with 1,000 (the UDP source port
  stepping through 1000-1999, so each frame of a batch is a different
  flow); and one application's UDP socket (a Python loop of `sendto`),
  which offers less than the switches can forward, so its figure is mostly
  that sender's rate and shows what a switch costs the sending CPU.  The switches take turns, in rotating order,
  for several short rounds, and each figure is the median of its rounds: the
  machine's speed drifts by more than the differences measured, and turns
  spread the drift evenly;
* TCP throughput: iperf3, one stream;

first with `normal` forwarding (MAC learning), then with 1,000 flows
installed (998 that never match, two that forward).  It prints every figure,
what share of the frames sent each switch delivered, the ratios vnet/OVS and
vnet/bridge, and for vnet reconciles what entered the switch with what left
it and what its drop counters say.

Open vSwitch runs from Debian's openvswitch-switch in a private directory
(its own ovsdb-server and ovs-vswitchd, started and stopped here by PID).
Needs root.  Usage: `python benchmarks/switch_bench.py [--seconds 3] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vnet.datapath.control import request
from vnet.ofp.client import OFClient
from vnet.ofp.convert import flow_mod_to_ofp
from vnet.pipeline.ofctl import parse_flow
from vnet.testing.netns import Lab, run, wait_for

SECONDS = 3.0
ROUNDS = 5
_ports = itertools.count()
FLOWS = [f"priority=100,ip,nw_dst=10.99.{i // 250}.{i % 250 + 1},actions=drop" for i in range(998)]
FLOWS += ["priority=10,in_port=1,actions=output:2", "priority=10,in_port=2,actions=output:1"]


@dataclass
class Topo:
    """Namespaces a and b, the switch-side veth ends pa and pb, and the namespace ends ea, eb."""

    a: str
    b: str
    pa: str
    pb: str
    ea: str
    eb: str


def topo(lab: Lab) -> Topo:
    a, b = lab.ns("ba"), lab.ns("bb")
    pa, ea = lab.veth("xa", a, ["10.88.0.1/24"])
    pb, eb = lab.veth("xb", b, ["10.88.0.2/24"])
    return Topo(a, b, pa, pb, ea, eb)


def _iperf(lab: Lab, a: str, b: str, seconds: float, *args: str) -> dict[str, Any] | None:
    """One iperf3 test against a one-off server; None if it stalled."""
    port = str(5201 + next(_ports) % 100)
    srv = lab.spawn("iperf3", "-s", "-1", "-p", port, "-B", "10.88.0.2", ns=b)
    wait_for(
        lambda: f":{port}" in lab.exec(b, "ss", "-ltn", check=False).stdout, 10, "iperf3 server"
    )
    try:
        r = lab.exec(
            a,
            "iperf3",
            "-c",
            "10.88.0.2",
            "-p",
            port,
            "-t",
            str(seconds),
            "-J",
            *args,
            timeout=seconds + 15,
        )
        return dict(json.loads(r.stdout)["end"])
    except (subprocess.TimeoutExpired, RuntimeError, KeyError, ValueError):
        return None
    finally:
        if srv.poll() is None:
            srv.kill()


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


def _sysfs(lab: Lab, ns: str, dev: str, attr: str) -> str:
    return lab.exec(ns, "cat", f"/sys/class/net/{dev}/{attr}").stdout.strip()


# what each small-packet load is called, and trafgen's source port for it (None: a UDP socket)
LOADS = {
    "64-byte UDP flood (trafgen), 1 flow": "4000",
    "64-byte UDP flood, 1,000 flows": "dinc(1000, 1999)",
    "64-byte UDP from one UDP socket": None,
}


@dataclass
class Rig:
    """One switch under test, its two namespaces, and what was measured through it."""

    lab: Lab
    t: Topo
    report: Callable[[], dict[str, float]] = lambda: {}
    sent: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in LOADS})  # kpps
    got: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in LOADS})
    tcp_gbps: float = 0.0
    eth: str = ""  # trafgen's Ethernet header: a's end to b's

    def ready(self) -> None:
        lab, t = self.lab, self.t
        self.eth = (
            f"eth(da={_sysfs(lab, t.b, t.eb, 'address')}, sa={_sysfs(lab, t.a, t.ea, 'address')})"
        )
        lab.exec(t.a, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.88.0.2", check=False)
        lab.spawn(sys.executable, "-c", SINK, ns=t.b)
        wait_for(lambda: ":9 " in lab.exec(t.b, "ss", "-lun", check=False).stdout, 10, "UDP sink")

    def flood(self, load: str, seconds: float) -> None:
        """One round of 64-byte frames from a to b's sink: sent as counted by a's
        interface, received as counted by b's."""
        lab, t = self.lab, self.t
        sent0, got0 = self._counted()
        sport = LOADS[load]
        if sport is None:
            lab.exec(t.a, sys.executable, "-c", FLOOD, str(seconds), timeout=seconds + 30)
        else:
            self._trafgen(seconds, sport)
        time.sleep(0.3)
        sent, got = self._counted()
        self.sent[load].append((sent - sent0) / seconds / 1e3)
        self.got[load].append((got - got0) / seconds / 1e3)

    def _counted(self) -> tuple[int, int]:
        """(frames a's interface sent, frames b's interface received) so far."""
        lab, t = self.lab, self.t
        sent = _sysfs(lab, t.a, t.ea, "statistics/tx_packets")
        return int(sent), int(_sysfs(lab, t.b, t.eb, "statistics/rx_packets"))

    def _trafgen(self, seconds: float, sport: str) -> None:
        """The generator floods from a's end for `seconds`; SIGINT to the process group
        started here (trafgen forks its worker) stops it and its worker."""
        lab, t = self.lab, self.t
        frame = (
            f"{{ {self.eth}, ipv4(sa=10.88.0.1, da=10.88.0.2, ttl=64),"
            f" udp(sp={sport}, dp=9), fill(0, 18) }}"
        )  # 60 bytes, 64 on the wire with the FCS, valid checksums
        p = lab.spawn(*TRAFGEN, "--dev", t.ea, frame, ns=t.a)
        time.sleep(seconds)
        if p.poll() is not None:
            raise RuntimeError(f"trafgen exited early ({p.returncode})")
        os.killpg(p.pid, signal.SIGINT)
        p.wait(10)

    def tcp(self, seconds: float) -> None:
        r = _iperf(self.lab, self.t.a, self.t.b, seconds)
        self.tcp_gbps = 0.0 if r is None else r["sum_received"]["bits_per_second"] / 1e9


@contextlib.contextmanager
def run_vnet(flows: bool) -> Iterator[Rig]:
    with Lab() as lab, tempfile.TemporaryDirectory() as d:
        t = topo(lab)
        name = lab.name("vb")
        env = {"VNET_RUNDIR": d}
        mode = ["--fail-mode", "secure"] if flows else []
        lab.spawn(
            sys.executable, "-m", "vnet", "switch", "run", "--name", name, "--no-internal",
            "--port", f"{t.pa},port_security=false", "--port", f"{t.pb},port_security=false", *mode,
            env=env, log=Path(d) / "sw.log",
        )  # fmt: skip
        ctl = os.path.join(d, f"{name}.ctl")
        wait_for(lambda: os.path.exists(ctl), 20, "vnet switch")
        if flows:
            with OFClient("unix:" + os.path.join(d, f"{name}.mgmt")) as c:
                mods = [flow_mod_to_ofp(parse_flow(t).flow) for t in FLOWS]
                c.transact(*mods)

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

        yield Rig(lab, t, report)


@contextlib.contextmanager
def run_ovs(flows: bool) -> Iterator[Rig]:
    # its own network namespace: a netdev datapath owns a tap named "ovs-netdev",
    # which must not meet a system Open vSwitch's
    with Lab() as lab, tempfile.TemporaryDirectory() as d:
        t = topo(lab)
        ons = lab.ns("ov")
        for p in (t.pa, t.pb):
            run("ip", "link", "set", p, "netns", ons)
            run("ip", "-n", ons, "link", "set", p, "up")
        env = {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}
        db = f"{d}/conf.db"
        run("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema")
        sock = f"unix:{d}/db.sock"
        lab.spawn(
            "ovsdb-server",
            db,
            f"--remote=p{sock}",
            f"--unixctl={d}/ovsdb.ctl",
            env=env,
            log=Path(d) / "ovsdb.log",
        )
        wait_for(lambda: os.path.exists(f"{d}/db.sock"), 10, "ovsdb-server")
        vsctl = ("ovs-vsctl", f"--db={sock}", "--timeout=20")
        run(*vsctl, "--no-wait", "init")
        lab.spawn(
            "ovs-vswitchd",
            sock,
            f"--unixctl={d}/vswitchd.ctl",
            ns=ons,
            env=env,
            log=Path(d) / "vswitchd.log",
        )
        br = lab.name("ob")
        run(*vsctl, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        if flows:
            run(*vsctl, "set-fail-mode", br, "secure")
        for n, p in enumerate((t.pa, t.pb), 1):
            run(*vsctl, "add-port", br, p, "--", "set", "interface", p, f"ofport_request={n}")
        if flows:
            f = Path(d) / "flows"
            f.write_text("\n".join(FLOWS) + "\n")
            run("ovs-ofctl", "-O", "OpenFlow13", "add-flows", f"unix:{d}/{br}.mgmt", str(f))
        yield Rig(lab, t)


@contextlib.contextmanager
def run_bridge(flows: bool) -> Iterator[Rig]:
    with Lab() as lab:
        t = topo(lab)
        br = lab.name("lb")
        run("ip", "link", "add", br, "type", "bridge")

        def remove() -> None:
            run("ip", "link", "del", br, check=False)

        lab.defer(remove)
        for p in (t.pa, t.pb):
            run("ip", "link", "set", p, "master", br)
        run("ip", "link", "set", br, "up")
        yield Rig(lab, t)


def _rounds(rigs: dict[str, Rig], load: str, rounds: int, seconds: float) -> None:
    names = list(rigs)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rigs[name].flood(load, seconds)


def _ratio(v: list[float], p: list[float]) -> str:
    each = [x / max(y, 1e-9) for x, y in zip(v, p, strict=True)]
    median = statistics.median(v) / max(statistics.median(p), 1e-9)
    return f"{median:.2f}x (round by round {min(each):.2f}-{max(each):.2f}x)"


def _print(rigs: dict[str, Rig]) -> None:
    for name, r in rigs.items():
        print(f"  {name:13s} TCP {r.tcp_gbps:7.2f} Gbit/s")
        for load in LOADS:
            got, sent = r.got[load], r.sent[load]
            print(f"    {load:36s} {statistics.median(got):7.1f} kpps received "
                  f"(rounds {min(got):.0f}-{max(got):.0f}), {100 * sum(got) / sum(sent):5.1f}% "
                  f"of the {statistics.median(sent):.1f} kpps sent")  # fmt: skip
    v = rigs["vnet"]
    for peer in ("ovs-netdev", "linux-bridge"):
        if peer not in rigs:
            continue
        p = rigs[peer]
        tcp = f"{v.tcp_gbps / p.tcp_gbps:.2f}x" if p.tcp_gbps else "inf (the peer's TCP stalled)"
        print(f"  vnet/{peer}: TCP {tcp}")
        for load in LOADS:
            print(f"    {load:36s} {_ratio(v.got[load], p.got[load])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS, help="length of one round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="small-packet rounds per switch")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("switch_bench needs root (network namespaces, Open vSwitch)")
    runners: dict[str, Callable[[bool], contextlib.AbstractContextManager[Rig]]] = {
        "vnet": run_vnet,
        "ovs-netdev": run_ovs,
        "linux-bridge": run_bridge,
    }
    for flows in (False, True):
        label = "1,000 installed flows" if flows else "normal (MAC learning)"
        print(f"\n== {label}: small packets {args.rounds} rounds x {args.seconds:g} s per switch "
              f"and load, TCP {2 * args.seconds:g} s ==")  # fmt: skip
        with contextlib.ExitStack() as stack:
            rigs = {
                name: stack.enter_context(fn(flows))
                for name, fn in runners.items()
                if not (flows and name == "linux-bridge")
            }
            for rig in rigs.values():
                rig.ready()
            for load in LOADS:
                _rounds(rigs, load, args.rounds, args.seconds)
            for rig in rigs.values():
                rig.tcp(2 * args.seconds)
            extra = rigs["vnet"].report()
            _print(rigs)
            print(f"  vnet packets neither delivered nor counted as drops: {extra['unaccounted']}")


if __name__ == "__main__":
    main()
