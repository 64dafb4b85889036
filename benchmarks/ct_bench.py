"""Connection tracking: a stateful firewall against plain forwarding, vnet beside Open vSwitch.

Three measurements in one run:

1. Throughput through the classic stateful firewall pipeline (table 0 sends
   untracked IP through `ct(table=1)`; table 1 commits a new connection
   from port 1 and forwards it, forwards established traffic both ways, and
   drops the rest) against plain forwarding (two in_port -> output flows),
   on the vnet switch and on Open vSwitch's userspace datapath (netdev),
   four rigs built side by side (`_rig`): TCP (one iperf3 stream) and
   64-byte UDP (trafgen flooding faster than any switch forwards, with one
   flow and with 1,000; and one application's UDP socket).  Transmit
   checksum offload, TSO and GSO are off in the namespaces on every rig:
   Open vSwitch's userspace datapath stalls TCP otherwise, and its tracker
   refuses partial checksums.  The cost of `ct` is the ratio of the plain
   rate to the stateful rate (under the flood and for TCP the switch is the
   bottleneck, so this is its per-packet cost), and beside it the switch's
   CPU time per frame delivered (utime + stime from /proc), which says the
   same even where the switch is not the bottleneck.  The UDP sink never
   answers, so its "connections" stay `+new` and every frame is committed
   again (`ct(commit)`), on both switches alike.
2. New TCP connections per second through the same pipelines: ApacheBench
   (`ab`, apache2-utils: one connection per request, 8 at a time) against
   nginx (nginx-light, one worker, a 3-byte answer), both in the
   namespaces, with the switch's CPU share and CPU per connection beside
   the rate -- generator, server and switch share the machine's cores, so
   the CPU per connection is the figure that compares the switches.  Each
   closed connection lingers in the tracker (TIME_WAIT: 120 s in vnet, as
   in Linux), so the table grows with the rate; its size at the end is
   printed.
3. The tracker alone, in process (no root): 100,000 established TCP
   connections in a `vnet.datapath.conntrack.Tracker` from synthetic
   frames; bytes per connection (tracemalloc), and the cost of one packet
   of an established connection with 100,000 connections in the table
   against 10 (ns per packet and the ratio), beside a bare dict lookup of
   the same tuples as a reference.

The rigs take turns in rotating order for several short rounds and each
figure is the median of its rounds; ratios hold from machine to machine,
absolute figures do not.  Needs root for 1 and 2 (`--tracker-only` runs 3
alone).  Usage: `python benchmarks/ct_bench.py [--seconds 3] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

from _rig import LOADS, Rig, ovs_switch, ratio, rotate, stop_on_sigterm, vnet_switch
from vnet.datapath.conntrack import EST, TRK, Tracker
from vnet.packet import flowkey as fk
from vnet.testing.netns import wait_for

SECONDS = 3.0
ROUNDS = 5
PLAIN = ["priority=10,in_port=1,actions=output:2", "priority=10,in_port=2,actions=output:1"]
STATEFUL = [
    "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)",
    "table=0,priority=10,arp,in_port=1,actions=output:2",
    "table=0,priority=10,arp,in_port=2,actions=output:1",
    "table=1,priority=10,ip,in_port=1,ct_state=+new+trk,actions=ct(commit),output:2",
    "table=1,priority=10,ip,in_port=1,ct_state=+est+trk,actions=output:2",
    "table=1,priority=10,ip,in_port=2,ct_state=+est+trk,actions=output:1",
]  # anything else misses table 1 and is dropped
RIGS = {  # name: (switch, flows)
    "vnet plain": (vnet_switch, PLAIN),
    "vnet ct": (vnet_switch, STATEFUL),
    "ovs plain": (ovs_switch, PLAIN),
    "ovs ct": (ovs_switch, STATEFUL),
}
TCP = "TCP, one iperf3 stream"
CONNS = "new TCP connections (ab -c 8)"
CONCURRENCY = 8

NGINX = """
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx.err;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 10.88.0.2:80 backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


# -- 1 and 2: the switches between namespaces ------------------------------------------
def serve_http(rig: Rig, d: str) -> None:
    """nginx in b's namespace, stopped by its PID with the rig; its worker too, should the
    master have had to be killed."""
    conf = Path(d) / "nginx.conf"
    conf.write_text(NGINX.format(d=d))
    master: list[subprocess.Popen[bytes]] = []

    def stop_group() -> None:  # undone after the master's own stop (SIGTERM, then SIGKILL)
        for p in master:
            if p.returncode == -signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)

    rig.lab.defer(stop_group)
    master.append(
        rig.lab.spawn("nginx", "-c", str(conf), "-p", d, "-e", f"{d}/nginx.err", ns=rig.t.b)
    )
    wait_for(lambda: ":80 " in rig.lab.exec(rig.t.b, "ss", "-ltn", check=False).stdout, 10, "nginx")


def connections(rig: Rig, seconds: float, out: dict[str, list[float]]) -> None:
    """One round of ab: connections per second, the switch's CPU share, failures."""
    c0 = rig.counted()
    r = rig.lab.exec(
        rig.t.a, "ab", "-q", "-r", "-s", "5", "-c", str(CONCURRENCY), "-t", f"{seconds:g}",
        "-n", "100000000", "http://10.88.0.2/", check=False, timeout=seconds + 30,
    )  # fmt: skip
    c1 = rig.counted()

    def figure(name: str) -> float:
        m = re.search(rf"^{name}:\s+([\d.]+)", r.stdout, re.M)
        if m is None:
            raise RuntimeError(f"ab printed no {name!r}: {r.stdout[-500:]} {r.stderr[-500:]}")
        return float(m[1])

    done, took = figure("Complete requests"), figure("Time taken for tests")
    out["rate"].append(done / took)
    out["failed"].append(figure("Failed requests"))
    out["cpu"].append((c1.cpu - c0.cpu) / (c1.at - c0.at))


def _us_per(cpu: list[float], kpps: list[float]) -> list[float]:
    """The switch's CPU microseconds per frame, round by round."""
    return [c / max(k, 1e-9) * 1e3 for c, k in zip(cpu, kpps, strict=True)]


def wire(seconds: float, rounds: int) -> list[str]:
    """Measurements 1 and 2; the summary lines for README."""
    conns: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in RIGS}
    with stop_on_sigterm(), contextlib.ExitStack() as stack:
        rigs = {
            n: stack.enter_context(sw(flows, offloads=False)) for n, (sw, flows) in RIGS.items()
        }
        for rig in rigs.values():
            rig.ready()
            serve_http(rig, stack.enter_context(tempfile.TemporaryDirectory()))
        print(f"\n== 1. the firewall pipeline against plain forwarding, offloads off: "
              f"{rounds} rounds x {seconds:g} s per rig and load ==")  # fmt: skip
        rotate(rigs, rounds, lambda rig: rig.tcp(seconds))
        for load in LOADS:
            rotate(rigs, rounds, lambda rig, load=load: rig.flood(load, seconds))
        names = {id(r): n for n, r in rigs.items()}
        print(f"\n== 2. {CONNS}: {rounds} rounds x {seconds:g} s per rig ==")
        rotate(rigs, rounds, lambda rig: connections(rig, seconds, conns[names[id(rig)]]))
        sizes = {n: rigs[n].ct_size() for n in ("vnet ct", "ovs ct")}
        detail = {n: rigs[n].ct_stats() for n in ("vnet ct", "ovs ct")}
        extra = rigs["vnet ct"].report()
    return _print_wire(rigs, conns, sizes, detail, extra["unaccounted"])


def _print_wire(
    rigs: dict[str, Rig],
    conns: dict[str, dict[str, list[float]]],
    sizes: dict[str, int],
    detail: dict[str, str],
    unaccounted: float,
) -> list[str]:
    med = statistics.median
    rate: dict[str, dict[str, list[float]]] = {load: {} for load in (TCP, *LOADS, CONNS)}
    us: dict[str, dict[str, list[float]]] = {load: {} for load in rate}
    for n, r in rigs.items():
        rate[TCP][n], us[TCP][n] = r.tcp_gbps, _us_per(r.tcp_cpu, r.tcp_kpps)
        for load in LOADS:
            rate[load][n], us[load][n] = r.got[load], _us_per(r.cpu[load], r.got[load])
        c = conns[n]
        rate[CONNS][n] = c["rate"]
        us[CONNS][n] = [
            cpu / max(x, 1e-9) * 1e6 for cpu, x in zip(c["cpu"], c["rate"], strict=True)
        ]
    unit = {TCP: "Gbit/s", CONNS: "conn/s"}
    print(f"\n  {'':40s}" + "".join(f"{n:>16s}" for n in rigs))
    for load in rate:
        u = unit.get(load, "kpps")
        print(f"  {load + ', ' + u:40s}" + "".join(f"{med(rate[load][n]):16.2f}" for n in rigs))
        what = "connection" if load == CONNS else "frame"
        print(f"  {'  switch CPU µs per ' + what:40s}"
              + "".join(f"{med(us[load][n]):16.2f}" for n in rigs))  # fmt: skip
    for n in rigs:
        c = conns[n]
        print(f"  {n}: ab failures per round {c['failed']}, switch CPU share "
              f"{med(c['cpu']):.2f} of one core while ab ran")  # fmt: skip
    print(
        "\n  cost of ct = plain rate / stateful rate (target for vnet: established "
        "connections <= 1.5x)"
    )
    for load in rate:
        v = ratio(rate[load]["vnet plain"], rate[load]["vnet ct"])
        o = ratio(rate[load]["ovs plain"], rate[load]["ovs ct"])
        print(f"    {load:38s} vnet {v}\n    {'':38s} OVS  {o}")
    print("  switch CPU per frame (per connection), stateful / plain")
    for load in rate:
        v = ratio(us[load]["vnet ct"], us[load]["vnet plain"])
        o = ratio(us[load]["ovs ct"], us[load]["ovs plain"])
        print(f"    {load:38s} vnet {v}\n    {'':38s} OVS  {o}")
    print("  vnet / OVS (rates)")
    for load in rate:
        p = ratio(rate[load]["vnet plain"], rate[load]["ovs plain"])
        s = ratio(rate[load]["vnet ct"], rate[load]["ovs ct"])
        print(f"    {load:38s} plain {p}\n    {'':38s} ct    {s}")
    for n in ("vnet ct", "ovs ct"):
        print(f"  {n}: {sizes[n]} connections in the tracker at the end")
        print("    " + detail[n].strip().replace("\n", "\n    "))
    print(f"  vnet ct: packets neither delivered nor counted as drops: {unaccounted}")

    def cell(load: str, n: str) -> str:
        r, u = med(rate[load][n]), med(us[load][n])
        return f"{r:.2f} ({u:.0f})" if load == TCP else f"{r:,.0f} ({u:.0f})"

    def x(a: list[float], b: list[float]) -> float:
        return med(a) / max(med(b), 1e-9)

    def cost(load: str, kind: str) -> str:
        plain, ct = kind + " plain", kind + " ct"
        return (
            f"{x(rate[load][plain], rate[load][ct]):.2f}x / {x(us[load][ct], us[load][plain]):.2f}x"
        )

    lines = [
        "rates (switch CPU µs per frame, per connection for ab); ct cost = plain rate / ct rate"
        " / ct CPU per frame / plain's",
        "| | vnet plain | vnet ct | OVS plain | OVS ct | ct cost vnet | ct cost OVS | vnet/OVS, ct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for load in rate:
        u = unit.get(load, "kpps")
        vo = x(rate[load]["vnet ct"], rate[load]["ovs ct"])
        lines.append(
            f"| {load}, {u} | " + " | ".join(cell(load, n) for n in rigs)
            + f" | {cost(load, 'vnet')} | {cost(load, 'ovs')} | {vo:.2f}x |"
        )  # fmt: skip
    lines.append(f"tracker at the end: vnet {sizes['vnet ct']:,}, OVS {sizes['ovs ct']:,} entries")
    return lines


# -- 3. the tracker in process -----------------------------------------------------------
_ETH = bytes.fromhex("0200000000020200000000010800")
_IP = struct.Struct("!BBHHHBBHII")
_TCPH = struct.Struct("!HHIIBBHHH")
SYN, ACK, PSH = 0x02, 0x10, 0x08
SERVER = 0x0A020001  # 10.2.0.1


def tcp_frame(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int,
              payload: int = 0) -> bytes:  # fmt: skip
    """Ethernet/IPv4/TCP, checksums left zero (the tracker does not read them)."""
    ip = _IP.pack(0x45, 0, 40 + payload, 0, 0x4000, 64, 6, 0, src, dst)
    tcp = _TCPH.pack(sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    return _ETH + ip + tcp + bytes(payload)


def _conn(i: int) -> tuple[int, int]:
    """Client address and port of connection i (10.1.0.0/16 upwards, ports 1024-60023)."""
    return 0x0A010000 + i // 60000, 1024 + i % 60000


def _established(ct: Tracker, n: int) -> None:
    """n connections opened with a three-way handshake, each committed on its SYN."""
    process = ct.process
    for i in range(n):
        c, port = _conn(i)
        for frame, commit in (
            (tcp_frame(c, SERVER, port, 80, 1000, 0, SYN), True),
            (tcp_frame(SERVER, c, 80, port, 5000, 1001, SYN | ACK), False),
            (tcp_frame(c, SERVER, port, 80, 1001, 5001, ACK), False),
        ):
            process(frame, fk.extract(frame), 0, 1.0, commit=commit)


def _data(i: int) -> tuple[bytes, tuple[int, ...]]:
    """A 100-byte segment from the client of connection i, and its flow key."""
    c, port = _conn(i)
    frame = tcp_frame(c, SERVER, port, 80, 1001, 5001, ACK | PSH, 100)
    return frame, fk.extract(frame)


def _tuple(i: int) -> tuple[int, ...]:
    """Connection i's original-direction tuple, as the tracker keys its table."""
    c, port = _conn(i)
    return (0, 4, 6, c, SERVER, port, 80)


def _ns_per_packet(ct: Tracker, pkts: list[tuple[bytes, tuple[int, ...]]], repeat: int) -> float:
    process = ct.process
    for frame, key in pkts[:10]:
        state = process(frame, key, 0, 2.0).state
        assert state == TRK | EST, f"not established: ct_state {state:#x}"
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for frame, key in pkts:
            process(frame, key, 0, 2.0)
        best = min(best, time.perf_counter() - t0)
    return best / len(pkts) * 1e9


def _ns_per_get(table: dict[object, object], keys: list[object], repeat: int) -> float:
    get = table.get
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for k in keys:
            get(k)
        best = min(best, time.perf_counter() - t0)
    return best / len(keys) * 1e9


def tracker(n: int = 100_000, sample: int = 20_000, repeat: int = 5) -> list[str]:
    """Measurement 3; the summary lines for README."""
    print(f"\n== 3. the tracker in process: {n:,} established TCP connections ==")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    big = Tracker()
    _established(big, n)
    gc.collect()
    per_conn = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert len(big) == n, len(big)
    print(f"  memory: {per_conn:,.0f} bytes per connection (tracemalloc; both directions' "
          f"tuples in the table, the connection, TCP state of both ends)")  # fmt: skip
    small = Tracker()
    _established(small, 10)
    rng = random.Random(1)
    big_pkts = [_data(i) for i in rng.sample(range(n), sample)]
    small_pkts = [_data(i % 10) for i in range(sample)]
    t_big = _ns_per_packet(big, big_pkts, repeat)
    t_small = _ns_per_packet(small, small_pkts, repeat)
    d_big = _ns_per_get(big._table, [_tuple(i) for i in rng.sample(range(n), sample)], repeat)
    d_small = _ns_per_get(small._table, [_tuple(i % 10) for i in range(sample)], repeat)
    print(f"  a packet of an established connection: {t_big:,.0f} ns with {n:,} connections, "
          f"{t_small:,.0f} ns with 10: {t_big / t_small:.2f}x")  # fmt: skip
    print(f"  (the table's dict lookup alone: {d_big:.0f} ns against {d_small:.0f} ns)")
    return [
        f"tracker, {n:,} established TCP connections: {per_conn:,.0f} bytes per connection; "
        f"a packet of an established connection {t_big:,.0f} ns at {n:,} against "
        f"{t_small:,.0f} ns at 10 connections ({t_big / t_small:.2f}x)"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS, help="length of one round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per rig and load")
    ap.add_argument("--tracker-only", action="store_true", help="only 3: the tracker in process")
    args = ap.parse_args()
    summary = []
    if not args.tracker_only:
        if os.geteuid() != 0:
            sys.exit("ct_bench needs root (network namespaces, Open vSwitch); "
                     "--tracker-only does not")  # fmt: skip
        summary += wire(args.seconds, args.rounds)
    summary += tracker()
    print("\n== summary ==")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
