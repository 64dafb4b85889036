"""The controller end to end: `vnet lab` with the two-tenant example on real namespaces.

Every test runs twice: with the vnet switch and with Open vSwitch (netdev
datapath, started by the lab) as the chassis' switch -- the same example
must give the same reachability on both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.client import Client
from vnet.lab.real import Lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
ROOT = Path(__file__).resolve().parents[2]
VNET = [sys.executable, "-m", "vnet"]


@pytest.fixture(params=["vnet", "ovs"])
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    r = subprocess.run(
        [*VNET, "lab", "up", str(ROOT / "examples/two-tenants.yaml"), "--dir", str(tmp_path),
         "--switch", request.param],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lab = Lab(tmp_path)
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        yield lab
    finally:
        subprocess.run([*VNET, "lab", "down", "--dir", str(tmp_path)], timeout=60)
        assert not (tmp_path / "state.json").exists()


def ping(
    lab: Lab, port: str, addr: str, count: int = 3, interval: str = "0.2"
) -> subprocess.CompletedProcess[str]:
    return lab.exec(port, ["ping", "-c", str(count), "-i", interval, "-W", "1", addr], timeout=60)


def echoes_in(lab: Lab, port: str) -> int:
    """ICMP echo requests the workload's stack has received."""
    lines = [ln.split() for ln in lab.exec(port, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    head, values = [ln for ln in lines if ln[0] == "Icmp:"][:2]
    return int(values[head.index("InEchos")])


def vnet(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VNET_API": lab.api, "VNET_RUNDIR": str(lab.dir)}
    return subprocess.run([*VNET, *args], capture_output=True, text=True, env=env, timeout=60)


def test_two_tenants_same_subnet_isolated(lab: Lab) -> None:
    assert ping(lab, "blue-web", "10.0.0.11").returncode == 0
    assert ping(lab, "red-web", "10.0.0.11").returncode == 0
    # blue-web addresses red-db by its MAC: the frame never leaves blue's network
    with Client(lab.api) as c:
        red_db = c.get("port", "red-db")
    before = echoes_in(lab, "red-db")
    lab.exec(
        "blue-web", ["ip", "neigh", "replace", "10.0.0.11", "lladdr", red_db["mac"], "dev", "eth0"]
    )
    assert ping(lab, "blue-web", "10.0.0.11", count=2).returncode != 0
    assert echoes_in(lab, "red-db") == before
    # ARP was answered by the switch from the model: blue-db's MAC, not red-db's
    lab.exec("blue-web", ["ip", "neigh", "del", "10.0.0.11", "dev", "eth0"])
    assert ping(lab, "blue-web", "10.0.0.11", count=1).returncode == 0
    neigh = lab.exec("blue-web", ["ip", "neigh", "show", "10.0.0.11"]).stdout
    with Client(lab.api) as c:
        assert c.get("port", "blue-db", tenant="blue")["mac"] in neigh


def ofctl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """`vnet ofctl` for a vnet switch, `ovs-ofctl` for Open vSwitch: the switch's own tool."""
    if (lab.dir / "ovs-hv1").exists():  # Open vSwitch
        sock = f"unix:{lab.dir}/ovs-hv1/br-int.mgmt"
        return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", args[0], sock, *args[1:]],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
    return vnet(lab, "ofctl", args[0], "hv1", *args[1:])


def test_drift_shows_a_hand_made_flow_and_repair_removes_it(lab: Lab) -> None:
    assert "no drift" in vnet(lab, "drift", "hv1").stdout
    r = ofctl(lab, "add-flow", "table=3,priority=500,ip,nw_dst=10.0.0.99,actions=drop")
    assert r.returncode == 0, r.stderr
    r = vnet(lab, "drift", "hv1")
    assert "extra" in r.stdout and "nw_dst=10.0.0.99" in r.stdout and "no cookie" in r.stdout, (
        r.stdout
    )
    assert vnet(lab, "drift", "hv1", "--repair").returncode == 0
    assert "no drift" in vnet(lab, "drift", "hv1").stdout
    dump = ofctl(lab, "dump-flows")
    assert dump.returncode == 0 and "cookie" in dump.stdout, dump.stderr
    assert "10.0.0.99" not in dump.stdout


def test_controller_restart_sends_nothing_and_loses_no_ping(lab: Lab) -> None:
    ns = lab.netns("blue-web")
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", ns, "ping", "-i", "0.01", "-c", "400", "-W", "1", "10.0.0.11"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        lab.restart("controller")
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            try:
                with Client(lab.api) as c:
                    status = c.status()
                if status["switches"] and all(s["flows"] for s in status["switches"]):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        assert status is not None and status["switches"], status
        assert status["flow_mods"] == 0  # the switch already had every flow
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
    assert " 0% packet loss" in out, out[-300:]


def test_killed_switch_is_resynced(lab: Lab) -> None:
    lab.restart("switch-hv1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ping(lab, "red-web", "10.0.0.11", count=1).returncode == 0:
            break
        time.sleep(0.2)
    assert ping(lab, "red-web", "10.0.0.11").returncode == 0
    assert "no drift" in vnet(lab, "drift", "hv1").stdout


@pytest.mark.parametrize("switch", ["vnet", "ovs"])
def test_dual_stack_both_families_reach(tmp_path: Path, switch: str) -> None:
    r = subprocess.run(
        [*VNET, "lab", "up", str(ROOT / "examples/dual-stack.yaml"), "--dir", str(tmp_path),
         "--switch", switch],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lab = Lab(tmp_path)
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        with Client(lab.api) as c:
            b = c.get("port", "b")
        v4 = next(f["ip"] for f in b["fixed_ips"] if ":" not in f["ip"])
        v6 = next(f["ip"] for f in b["fixed_ips"] if ":" in f["ip"])
        assert ping(lab, "a", v4).returncode == 0
        r6 = ping(lab, "a", v6)
        assert r6.returncode == 0, r6.stdout + r6.stderr
        neigh = lab.exec("a", ["ip", "-6", "neigh", "show", v6]).stdout
        assert b["mac"] in neigh, neigh
        # the switch answers the solicitation from the model: b, without its address
        # (so b itself would stay silent), is still resolved to b's MAC
        lab.exec("b", ["ip", "addr", "del", f"{v6}/64", "dev", "eth0"])
        lab.exec("a", ["ip", "-6", "neigh", "flush", "dev", "eth0"])
        assert v6 not in lab.exec("a", ["ip", "-6", "neigh", "show", v6]).stdout
        assert ping(lab, "a", v6, count=1).returncode != 0  # b no longer has it
        neigh = lab.exec("a", ["ip", "-6", "neigh", "show", v6]).stdout
        assert b["mac"] in neigh and "FAILED" not in neigh, neigh
        # a spoofed IPv6 source is dropped by port security: no reply comes back
        lab.exec("a", ["ip", "addr", "add", "fd00:10::99/64", "dev", "eth0", "nodad"])
        spoofed = lab.exec(
            "a", ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "fd00:10::99", v6], timeout=30
        )
        assert spoofed.returncode != 0, spoofed.stdout
    finally:
        subprocess.run([*VNET, "lab", "down", "--dir", str(tmp_path)], timeout=60)
    assert not (tmp_path / "state.json").exists()
