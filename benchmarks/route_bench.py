"""Routing: routed vs switched on vnet, one chassis and two; SNAT'd TCP; vnet vs Open vSwitch.

One lab (`vnet lab`, the controller and a switch per chassis as in
production) with two chassis, hv1 and hv2, and a router r between networks
n1 (10.0.1.0/24) and n2 (10.0.2.0/24), its gateway on the external network
`public` active on hv1 (SNAT of its subnets).  The sender, port `a`, is on
n1 on hv1; each path ends at a port of its own:

* switched, one chassis: a -> sw1 (n1, hv1);
* routed, one chassis: a -> rt1 (n2, hv1), through r;
* switched, two chassis: a -> sw2 (n1, hv2), through the tunnel;
* routed, two chassis: a -> rt2 (n2, hv2), routed on hv1 then tunnelled;
* SNAT'd (TCP only, second phase only): a -> the lab's outside server
  (203.0.113.10), routed and translated on hv1, out of its uplink through
  the lab's physical switch (an Open vSwitch netdev bridge of the lab's own,
  which stalls TCP from workloads with TSO/GSO on, as any Open vSwitch
  netdev does) to the outside namespace.

Loads, as `_rig` measures them: one iperf3 TCP stream; 64-byte UDP frames
flooded by trafgen (netsniff-ng) from a's end to a bound UDP socket that
never reads, counted by the receiver's interface (frames received per
second).  Beside each figure, the chassis' switches' CPU time (utime + stime
of both switch processes, from /proc) per frame: per TCP frame seen by the
sender's interface both ways, per UDP frame received.

Two phases.  (1) vnet, workloads on their default offloads: every path but
the SNAT'd one takes a turn per round, rotating, and the figures are the
medians of the rounds; printed with routed/switched (the target: >= 0.8x on
vnet).  (2) vnet vs Open vSwitch (datapath_type=netdev, the controller programming
it with the same flows over OpenFlow): a second lab on `--switch ovs`, and
transmit checksum offload, TSO and GSO off on every workload of both labs
(Open vSwitch's userspace datapath stalls TCP otherwise); both labs' paths
take turns; printed with routed/switched and SNAT'd/routed in each, and
vnet/OVS per path and load.

Machines are noisy: the ratios hold from run to run, the absolute figures do
not.  Needs root.  Usage:
`python benchmarks/route_bench.py [--seconds 3] [--rounds 3] [--phase vnet|ovs]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _rig import TRAFGEN, cpu_seconds, ratio, stop_on_sigterm
from vnet.lab.real import Lab

SECONDS, ROUNDS = 3.0, 3
SERVER = "203.0.113.10"  # the lab's outside server (its default)
# path -> (destination port, or "outside"; its address)
PATHS = {
    "switched, one chassis": ("sw1", "10.0.1.11"),
    "routed, one chassis": ("rt1", "10.0.2.11"),
    "switched, two chassis": ("sw2", "10.0.1.12"),
    "routed, two chassis": ("rt2", "10.0.2.12"),
    "SNAT'd, to the outside": ("outside", SERVER),
}
UDP_PATHS = [p for p in PATHS if not p.startswith("SNAT")]

SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind((sys.argv[1], 9))
time.sleep(3600)
"""


def topology() -> dict[str, Any]:
    def port(name: str, ip: str) -> dict[str, Any]:
        net, sub = ("n1", "s1") if ip.startswith("10.0.1.") else ("n2", "s2")
        chassis = "hv2" if name.endswith("2") else "hv1"
        return {"name": name, "tenant": "t", "network": net, "chassis": chassis,
                "fixed_ips": [{"subnet": sub, "ip": ip}]}  # fmt: skip

    ports = [port("a", "10.0.1.10")]
    ports += [port(dst, addr) for dst, addr in PATHS.values() if dst != "outside"]
    router = {
        "name": "r", "tenant": "t", "interfaces": [{"subnet": "s1"}, {"subnet": "s2"}],
        "routes": [{"cidr": "0.0.0.0/0", "nexthop": "198.51.100.1"}],
        "gateway": {"network": "public", "chassis": ["hv1"]},
    }  # fmt: skip
    return {
        "tenants": [{"name": "ops"}, {"name": "t"}],
        "chassis": [{"name": "hv1"}, {"name": "hv2"}],
        "networks": [
            {"name": "public", "tenant": "ops", "external": True, "physnet": "phys"},
            {"name": "n1", "tenant": "t"},
            {"name": "n2", "tenant": "t"},
        ],
        "subnets": [
            {"name": "pub4", "tenant": "ops", "network": "public", "cidr": "198.51.100.0/24"},
            {"name": "s1", "tenant": "t", "network": "n1", "cidr": "10.0.1.0/24"},
            {"name": "s2", "tenant": "t", "network": "n2", "cidr": "10.0.2.0/24"},
        ],
        "ports": ports,
        "routers": [router],
    }


@dataclass
class Rig:
    """One lab, what it runs and what was measured through it, per path and load."""

    lab: Lab
    switch: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tcp_gbps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    tcp_us: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    udp_kpps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    udp_sent: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    udp_us: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    eth: dict[str, str] = field(default_factory=dict)  # path -> trafgen's Ethernet header

    def sh(self, where: str, *cmd: str, timeout: float = 30) -> str:
        r = self.lab.exec(where, list(cmd), timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{where}: {' '.join(cmd)}: {r.stderr.strip()}")
        return r.stdout

    def spawn(self, where: str, *cmd: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["ip", "netns", "exec", self.lab.netns(where), *cmd],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    def switch_cpu(self) -> float:
        pids = [
            e["pid"] for e in self.lab.state["procs"] if e["role"] in ("switch-hv1", "switch-hv2")
        ]
        return sum(cpu_seconds(int(p)) for p in pids)

    def counter(self, where: str, what: str) -> int:
        return int(self.sh(where, "cat", f"/sys/class/net/eth0/statistics/{what}"))

    def offloads_off(self) -> None:
        for port in self.lab.state["ports"]:
            self.sh(port, "ethtool", "-K", "eth0", "tx", "off", "tso", "off", "gso", "off")

    def ready(self) -> None:
        """Every path answers (the router's next hops learned, the SNAT'd one included),
        a UDP sink at each destination, and trafgen's header (a's MAC to its next hop's)."""
        for path, (dst, addr) in PATHS.items():
            for _ in range(20):
                r = self.lab.exec("a", ["ping", "-c", "1", "-W", "1", addr], timeout=10)
                if r.returncode == 0:
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"{self.switch}: {path}: a cannot reach {addr}")
            if path not in UDP_PATHS:
                continue
            self.spawn(dst, sys.executable, "-c", SINK, addr)
            route = json.loads(self.sh("a", "ip", "-j", "route", "get", addr))[0]
            hop = route.get("gateway", addr)
            neigh = json.loads(self.sh("a", "ip", "-j", "neigh", "show", hop, "dev", "eth0"))
            mine = self.sh("a", "cat", "/sys/class/net/eth0/address").strip()
            self.eth[path] = f"eth(da={neigh[0]['lladdr']}, sa={mine})"
        for dst, addr in (PATHS[p] for p in UDP_PATHS):
            for _ in range(100):
                if f"{addr}:9 " in self.sh(dst, "ss", "-lun"):
                    break
                time.sleep(0.1)

    def tcp(self, path: str, seconds: float) -> None:
        dst, addr = PATHS[path]
        port = str(5201 + len(self.tcp_gbps[path]) % 50)
        srv = self.spawn(dst, "iperf3", "-s", "-1", "-p", port, "-B", addr)
        for _ in range(100):
            if f"{addr}:{port} " in self.sh(dst, "ss", "-ltn"):
                break
            time.sleep(0.1)
        c0 = self.counter("a", "tx_packets") + self.counter("a", "rx_packets")
        cpu0 = self.switch_cpu()
        try:
            out = self.lab.exec("a", ["iperf3", "-c", addr, "-p", port, "-t", str(seconds), "-J"],
                                timeout=seconds + 20).stdout  # fmt: skip
        except subprocess.TimeoutExpired:
            out = ""  # stalled
        cpu = self.switch_cpu() - cpu0
        frames = self.counter("a", "tx_packets") + self.counter("a", "rx_packets") - c0
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGKILL)
            srv.wait(10)
        try:
            gbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
        except (KeyError, ValueError):
            gbps = 0.0  # stalled
        self.tcp_gbps[path].append(gbps)
        self.tcp_us[path].append(cpu / max(frames, 1) * 1e6)

    def udp(self, path: str, seconds: float) -> None:
        dst, addr = PATHS[path]
        frame = (f"{{ {self.eth[path]}, ipv4(sa=10.0.1.10, da={addr}, ttl=64),"
                 f" udp(sp=4000, dp=9), fill(0, 18) }}")  # fmt: skip
        got0, sent0, cpu0 = (
            self.counter(dst, "rx_packets"),
            self.counter("a", "tx_packets"),
            self.switch_cpu(),
        )
        p = self.spawn("a", *TRAFGEN, "--dev", "eth0", frame)
        try:
            time.sleep(seconds)
            if p.poll() is not None:
                raise RuntimeError(f"trafgen exited early ({p.returncode})")
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(10)
        time.sleep(0.3)  # the switches' queues drain
        got = self.counter(dst, "rx_packets") - got0
        self.udp_kpps[path].append(got / seconds / 1e3)
        self.udp_sent[path].append((self.counter("a", "tx_packets") - sent0) / seconds / 1e3)
        self.udp_us[path].append((self.switch_cpu() - cpu0) / max(got, 1) * 1e6)


@contextlib.contextmanager
def lab(switch: str, top: Path) -> Iterator[Rig]:
    lb = Lab(top / switch)
    rig = Rig(lb, switch)
    try:
        lb.up(topology(), timeout=120, switch=switch)
        yield rig
    finally:
        rig.stop()
        lb.down()


def rotate(rigs: list[Rig], paths: list[str], rounds: int, fn: str, seconds: float) -> None:
    """Every (rig, path) once per round, each round starting one further on."""
    turns = [(r, p) for r in rigs for p in paths]
    for n in range(rounds):
        for rig, path in turns[n % len(turns) :] + turns[: n % len(turns)]:
            getattr(rig, fn)(path, seconds)


def med(v: list[float]) -> float:
    return statistics.median(v)


def show(rig: Rig) -> None:
    print(f"  {rig.switch}:")
    for path in [p for p in PATHS if rig.tcp_gbps[p]]:
        g = rig.tcp_gbps[path]
        line = f"    {path:24s} TCP {med(g):6.2f} Gbit/s ({med(rig.tcp_us[path]):5.1f} µs/frame)"
        if path in UDP_PATHS:
            k, s = rig.udp_kpps[path], rig.udp_sent[path]
            line += (f"   64-byte UDP {med(k):6.1f} kpps of {med(s):6.1f} sent "
                     f"({med(rig.udp_us[path]):5.1f} µs/frame)")  # fmt: skip
        print(line)


def routed_vs_switched(rig: Rig) -> None:
    for where in ("one chassis", "two chassis"):
        r, s = f"routed, {where}", f"switched, {where}"
        print(f"  {rig.switch} routed/switched, {where}: "
              f"TCP {ratio(rig.tcp_gbps[r], rig.tcp_gbps[s])}, "
              f"64-byte UDP {ratio(rig.udp_kpps[r], rig.udp_kpps[s])}")  # fmt: skip
    snat, routed = "SNAT'd, to the outside", "routed, one chassis"
    if not rig.tcp_gbps[snat]:
        return
    print(f"  {rig.switch} SNAT'd/routed (one chassis), TCP: "
          f"{ratio(rig.tcp_gbps[snat], rig.tcp_gbps[routed])}")  # fmt: skip


def phase_vnet(top: Path, seconds: float, rounds: int) -> None:
    print(f"\n== vnet, default offloads: {rounds} rounds x {seconds:g} s per path and load ==")
    with lab("vnet", top) as v:
        v.ready()
        rotate([v], UDP_PATHS, rounds, "tcp", seconds)
        rotate([v], UDP_PATHS, rounds, "udp", seconds)
        show(v)
        routed_vs_switched(v)


def phase_ovs(top: Path, seconds: float, rounds: int) -> None:
    print(f"\n== vnet vs Open vSwitch netdev, the same flows, tx checksum/TSO/GSO off: "
          f"{rounds} rounds x {seconds:g} s per switch, path and load ==")  # fmt: skip
    with contextlib.ExitStack() as stack:
        rigs = [stack.enter_context(lab(s, top)) for s in ("vnet", "ovs")]
        for r in rigs:
            r.offloads_off()
            r.ready()
        rotate(rigs, list(PATHS), rounds, "tcp", seconds)
        rotate(rigs, UDP_PATHS, rounds, "udp", seconds)
        for r in rigs:
            show(r)
        v, o = rigs
        for r in rigs:
            routed_vs_switched(r)
        for path in PATHS:
            tcp = (ratio(v.tcp_gbps[path], o.tcp_gbps[path])
                   if min(o.tcp_gbps[path]) > 0 else "inf (OVS stalled)")  # fmt: skip
            udp = (
                f", 64-byte UDP {ratio(v.udp_kpps[path], o.udp_kpps[path])}"
                if path in UDP_PATHS
                else ""
            )
            print(f"  vnet/ovs {path:24s} TCP {tcp}{udp}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS, help="length of one round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per path and load")
    ap.add_argument("--phase", choices=["vnet", "ovs"], action="append",
                    help="run only this phase (default: both)")  # fmt: skip
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("route_bench needs root (network namespaces, Open vSwitch)")
    for tool in ("trafgen", "iperf3", "ethtool", "ovs-vswitchd"):
        if shutil.which(tool) is None:
            sys.exit(f"route_bench needs {tool} (make bench-deps)")
    with stop_on_sigterm(), tempfile.TemporaryDirectory(prefix="route-bench-") as d:
        for phase in args.phase or ["vnet", "ovs"]:
            (phase_vnet if phase == "vnet" else phase_ovs)(Path(d), args.seconds, args.rounds)


if __name__ == "__main__":
    main()
