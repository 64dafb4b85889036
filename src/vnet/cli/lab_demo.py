"""`vnet demo`: the two-tenant example brought up, pinged, traced and torn down.

As root it is real: a controller, a vnet switch (or Open vSwitch with
`--switch ovs`) and one network namespace per port (`vnet lab`).  Without root (or with `--sim`) the same topology
runs simulated in this process: the same controller, compiler and switch
pipeline, with memory ports and tiny hosts that answer ARP and ping.

Before a real run, `preflight` checks that every program the demo will run
is on PATH and names what is missing with the Debian package that brings
it (`make demo` installs them).  A command that fails is shown with its
error output, never as a bare count of replies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ..client import Client
from ..lab.real import Lab
from ..lab.sim import SimLab
from .common import heading

__all__ = ["EXAMPLE", "preflight", "run_lab_demo"]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "two-tenants.yaml"
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
    return _real(console, doc, switch) if real else _sim(console, doc)


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
