"""`vnet demo`: the two-tenant example brought up, pinged, traced and torn down;
then the micro-segmentation example: one allowed and one refused connection,
each with the rule that decided it.

As root it is real: a controller, a vnet switch (or Open vSwitch with
`--switch ovs`) and one network namespace per port (`vnet lab`).  Without root (or with `--sim`) the same topology
runs simulated in this process: the same controller, compiler and switch
pipeline, with memory ports and tiny hosts that answer ARP and ping.

The firewall part asks the controller's proof (`verify`: the policy's
intended verdict, checked on the compiled flows) which rule decided, and
shows the refused attempt as the connection log recorded it.  Real, it
opens TCP connections between namespaces (client -> web tcp/80, client ->
db tcp/5432) to small servers; simulated, the hosts answer only ping, so it
pings (client -> web allowed, client -> db denied).

Before a real run, `preflight` checks that every program the demo will run
is on PATH and names what is missing with the Debian package that brings
it (`make demo` installs them).  A command that fails is shown with its
error output, never as a bare count of replies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ..client import Client
from ..lab.real import Lab
from ..lab.sim import SimLab
from ..lab.verify import check
from .common import heading

__all__ = ["EXAMPLE", "preflight", "run_lab_demo"]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "two-tenants.yaml"
MICROSEG = EXAMPLE.parent / "microseg.yaml"
# (from, to, TCP port, allowed?) -- real; simulated hosts answer ping only
TRIES = [("client", "web", 80, True), ("client", "db", 5432, False)]
PING_TRIES = [("client", "web", True), ("client", "db", False)]
SERVE = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8); print("up", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hello\\n"); c.close()
"""
CONNECT = """
import socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).recv(10)
    print("connected", round(time.monotonic() - t, 3))
except OSError as e:
    print(type(e).__name__, round(time.monotonic() - t, 3))
"""
PINGS = [
    ("blue-web", "10.0.0.11", "blue-db, same tenant"),
    ("red-web", "10.0.0.11", "red-db, same tenant, same address as blue-db"),
]


# program -> the Debian package that installs it
NEEDS = {"ip": "iproute2", "ping": "iputils-ping"}
NEEDS_OVS = {
    "ovsdb-tool": "openvswitch-switch",
    "ovsdb-server": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-switch",
    "ethtool": "ethtool",
}


def preflight(switch: str = "vnet") -> str | None:
    """None if every program a real demo runs is on PATH, else what is missing and how
    to install it."""
    needs = {**NEEDS, **(NEEDS_OVS if switch == "ovs" else {})}
    missing = {prog: pkg for prog, pkg in needs.items() if shutil.which(prog) is None}
    if not missing:
        return None
    progs = ", ".join(missing)
    pkgs = " ".join(dict.fromkeys(missing.values()))
    return (
        f"the demo runs {progs}, which {'is' if len(missing) == 1 else 'are'} not installed "
        f"(not on PATH): apt-get install {pkgs}, or run `make demo`, which installs "
        "what the demo needs"
    )


def _real_possible() -> bool:
    return os.geteuid() == 0


def run_lab_demo(console: Console, sim: bool = False, switch: str = "vnet") -> bool:
    """True if every ping went where it should."""
    if not EXAMPLE.exists():
        console.print(f"[red]the example {EXAMPLE} is missing (run from the source tree)[/]")
        return False
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    real = not sim and _real_possible()
    if switch == "ovs" and not real:
        console.print("[red]--switch ovs needs root (Open vSwitch and namespaces); not --sim[/]")
        return False
    missing = preflight(switch) if real else None
    if missing is not None:
        console.print(f"[red]error:[/] {missing}", soft_wrap=True)
        return False
    kind = "Open vSwitch" if switch == "ovs" else "a vnet switch"
    how = (
        f"network namespaces, {kind} and the controller" if real else "simulated in-process (--sim)"
    )
    heading(console, f"vnet demo: {EXAMPLE.name} -- {how}")
    console.print("Two tenants, blue and red, each with a network on 10.0.0.0/24, on one chassis.")
    ok = _real(console, doc, switch) if real else _sim(console, doc)
    if not MICROSEG.exists():
        console.print(f"[red]the example {MICROSEG} is missing (run from the source tree)[/]")
        return False
    seg: dict[str, Any] = yaml.safe_load(MICROSEG.read_text())
    heading(console, f"micro-segmentation: {MICROSEG.name} -- {how}")
    console.print("client, web and db by label (tier): client may reach web, db refuses client.")
    return (_real_microseg(console, seg, switch) if real else _sim_microseg(console, seg)) and ok


def _decided(cells: list[dict[str, Any]], src: str, dst: str, service: str) -> str:
    """What decided a connection, as the controller's proof says."""
    for c in cells:
        if (c["from"], c["to"]) == (src, dst) and c["service"].split()[0] == service:
            agrees = "" if c["agrees"] else "  [red](the flows disagree!)[/]"
            return f"{c['intended']}: {c['reason']}{agrees}"
    return "(no verdict)"


def _seg_line(console: Console, what: str, ok: bool, why: str) -> bool:
    mark = "[green]ok[/]" if ok else "[red]UNEXPECTED[/]"
    console.print(f"  {what}  {mark}", soft_wrap=True)
    console.print(f"    decided by -- {why}", highlight=False, soft_wrap=True)
    return ok


def _real_microseg(console: Console, doc: dict[str, Any], switch: str) -> bool:
    ips = {p["name"]: p["fixed_ips"][0]["ip"] for p in doc["ports"]}
    with tempfile.TemporaryDirectory(prefix="vnet-demo-") as d:
        lab = Lab(Path(d))
        servers: list[subprocess.Popen[str]] = []
        ok = True
        try:
            console.print("lab up ...")
            lab.up(doc, switch=switch)
            if switch == "ovs":  # its userspace tracker takes a partial checksum for a bad one
                for name in ips:
                    lab.exec(name, ["ethtool", "-K", "eth0", "tx", "off"], timeout=30)
            for name, port in (("web", 80), ("db", 5432)):
                srv = subprocess.Popen(
                    ["ip", "netns", "exec", lab.netns(name), sys.executable, "-c", SERVE,
                     ips[name], str(port)],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                servers.append(srv)
                if srv.stdout is None or srv.stdout.readline().strip() != "up":
                    console.print(f"  [red]the server on {name} tcp/{port} did not start[/]")
                    return False
            with Client(lab.api) as c:
                for src, dst, port, allowed in TRIES:
                    r = lab.exec(src, [sys.executable, "-c", CONNECT, ips[dst], str(port)], 30)
                    got, took = (r.stdout.split() + ["?", "99"])[:2]
                    refused = got == "ConnectionRefusedError" and float(took) < 1.0
                    good = got == "connected" if allowed else refused
                    cells = c.verify(src=src, dst=dst)["cells"]
                    what = f"{src} -> {dst} tcp/{port}: {got} after {took} s"
                    ok &= _seg_line(console, what, good, _decided(cells, src, dst, f"tcp/{port}"))
                for rec in c.flow_log(port="db")["records"][-1:]:
                    console.print(f"  connection log: {_record(rec)}", highlight=False)
        finally:
            for srv in servers:
                srv.kill()
                srv.wait(timeout=10)
            heading(console, "lab down")
            console.print(f"  removed {len(lab.down())} thing(s)")
    return ok


def _record(rec: dict[str, Any]) -> str:
    return " ".join(
        str(rec.get(k)) for k in ("src_port", "dst_port", "proto", "dport", "verdict", "rule")
    )


def _sim_microseg(console: Console, doc: dict[str, Any]) -> bool:
    ips = {p["name"]: p["fixed_ips"][0]["ip"] for p in doc["ports"]}
    lab = SimLab(doc)
    report = check(lab.ctl.nb.state())
    cells = [
        {"from": str(cell.src), "to": str(cell.dst), "service": str(cell.service),
         "intended": cell.verdict.action, "reason": cell.verdict.reason,
         "agrees": cell.verdict.allowed == (got.action == "allow")}
        for cell, got in report.cells
    ]  # fmt: skip
    ok = True
    for src, dst, allowed in PING_TRIES:
        got = lab.ping(src, ips[dst])
        what = f"{src} -> {dst} ping: {got}/3 replies"
        ok &= _seg_line(console, what, (got > 0) == allowed, _decided(cells, src, dst, "icmp/8"))
    return ok


def _verdict(
    console: Console,
    what: str,
    got: int,
    want: bool,
    run: subprocess.CompletedProcess[str] | None = None,
) -> bool:
    ok = (got > 0) == want
    mark = "[green]ok[/]" if ok else "[red]UNEXPECTED[/]"
    console.print(f"  {what}: {got}/3 replies  {mark}", soft_wrap=True)
    # ping exits 1 when no reply came; anything else (2, 127, 255 from `ip netns exec`)
    # is a command that did not run as meant: say why
    if run is not None and (run.returncode not in (0, 1) or not ok):
        last = run.stdout.strip().splitlines()[-1:]  # ping's summary line
        why = run.stderr.strip() or " ".join(last) or f"exit status {run.returncode}"
        console.print(f"    {' '.join(run.args)}: {why}", highlight=False, soft_wrap=True)
        ok = ok and run.returncode in (0, 1)
    return ok


def _real(console: Console, doc: dict[str, Any], switch: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="vnet-demo-") as d:
        lab = Lab(Path(d))
        ok = True
        try:
            console.print("lab up ...")
            lab.up(doc, switch=switch)
            with Client(lab.api) as c:
                for p in c.list("port"):
                    ips = ", ".join(f["ip"] for f in p["fixed_ips"])
                    console.print(f"  port {p['name']:9s} {p['mac']}  {ips:10s} {p['status']}")
                heading(console, "pings")
                for src, dst, what in PINGS:
                    r = lab.exec(src, ["ping", "-c", "3", "-i", "0.2", "-W", "1", dst], timeout=30)
                    got = r.stdout.count("bytes from")
                    ok &= _verdict(console, f"{src} -> {dst} ({what})", got, True, r)
                red_db = c.get("port", "red-db")
                neigh = [
                    "ip",
                    "neigh",
                    "replace",
                    "10.0.0.11",
                    "lladdr",
                    red_db["mac"],
                    "dev",
                    "eth0",
                ]
                r = lab.exec("blue-web", neigh)
                if r.returncode != 0:
                    console.print(f"  {' '.join(neigh)}: {r.stderr.strip()}", highlight=False)
                    ok = False
                r = lab.exec(
                    "blue-web", ["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.11"], timeout=30
                )
                got = r.stdout.count("bytes from")
                ok &= _verdict(console, "blue-web -> red-db's MAC (another tenant)", got, False, r)
                heading(console, "trace: blue-web sends icmp to 10.0.0.11")
                console.print(
                    c.trace("blue-web", "icmp,icmp_type=8,nw_dst=10.0.0.11")["text"], soft_wrap=True
                )
        finally:
            heading(console, "lab down")
            console.print(f"  removed {len(lab.down())} thing(s)")
    return ok


def _sim(console: Console, doc: dict[str, Any]) -> bool:
    lab = SimLab(doc)
    for h in lab.hosts.values():
        console.print(f"  port {h.port.name:9s} {h.port.mac}  {', '.join(h.port.ips)}")
    heading(console, "pings")
    ok = True
    for src, dst, what in PINGS:
        ok &= _verdict(console, f"{src} -> {dst} ({what})", lab.ping(src, dst), True)
    blue, red_db = lab.hosts["blue-web"], lab.hosts["red-db"]
    blue.neighbours[red_db.ip] = red_db.mac
    ok &= _verdict(
        console,
        "blue-web -> red-db's MAC (another tenant)",
        lab.ping("blue-web", "10.0.0.11"),
        False,
    )
    heading(console, "trace: blue-web sends icmp to 10.0.0.11")
    console.print(
        lab.ctl.trace("blue-web", "icmp,icmp_type=8,nw_dst=10.0.0.11").format(), soft_wrap=True
    )
    heading(console, "lab down (nothing to remove: it all lived in this process)")
    return ok
