"""Gateway failover on real namespaces: a gateway chassis' switch killed, the next takes over.

Three vnet chassis: hv1 holds the workload, hv2 and hv3 are the router's
gateway chassis (in that order).  A port forwarding of a floating IP (always
translated by the active gateway chassis, never distributed) takes the
outside's connections to the workload.  The controller runs BFD between the
chassis (vnet's BFD_CONFIG) and learns what the sessions say; when hv2's
switch process is killed, hv1 and hv3 see it down, the gateway becomes active
on hv3, which announces the gateway's and floating IP's addresses out of its
uplink, and the outside reaches the floating IP again within 3 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vnet.lab.real import Lab

from .labrig import running_lab
from .test_gateway import ASK, Whoami

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
]
FIP = "198.51.100.50"


def topology() -> dict[str, Any]:
    return {
        "tenants": [{"name": "ops"}, {"name": "t1"}],
        "chassis": [{"name": "hv1"}, {"name": "hv2"}, {"name": "hv3"}],
        "networks": [
            {"name": "public", "tenant": "ops", "external": True, "physnet": "phys"},
            {"name": "net", "tenant": "t1"},
        ],
        "subnets": [
            {"name": "pub4", "tenant": "ops", "network": "public", "cidr": "198.51.100.0/24"},
            {"name": "v4", "tenant": "t1", "network": "net", "cidr": "10.0.1.0/24"},
        ],
        "ports": [
            {
                "name": "web",
                "tenant": "t1",
                "network": "net",
                "chassis": "hv1",
                "fixed_ips": [{"subnet": "v4", "ip": "10.0.1.20"}],
            }
        ],
        "routers": [
            {
                "name": "r",
                "tenant": "t1",
                "interfaces": [{"subnet": "v4"}],
                "routes": [{"cidr": "0.0.0.0/0", "nexthop": "198.51.100.1"}],
                "gateway": {"network": "public", "chassis": ["hv2", "hv3"]},
            }
        ],
        "floating_ips": [
            {
                "name": "f",
                "tenant": "t1",
                "network": "public",
                "ip": FIP,
                "port_forwardings": [
                    {"protocol": "tcp", "external_port": 8080, "port": "web", "internal_port": 8080}
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(topology(), tmp_path_factory.mktemp("failover"), "vnet") as lab:
        yield lab


def _get(lab: Lab, kind: str) -> list[dict[str, Any]]:
    r = subprocess.run(
        [sys.executable, "-m", "vnet", "get", kind, "--api", lab.state["api"], "-o", "json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got: list[dict[str, Any]] = json.loads(r.stdout)
    return got


def _bfd(lab: Lab) -> dict[str, dict[str, str]]:
    """Each chassis' sessions, by name."""
    names = {c["id"]: c["name"] for c in _get(lab, "chassis")}
    return {
        o["name"]: {names.get(k, k): v for k, v in o["sessions"].items()}
        for o in _get(lab, "bfd_statuses")
    }


def _reaches(lab: Lab) -> bool:
    r = lab.exec("outside", [sys.executable, "-c", ASK, FIP, "8080"], timeout=10)
    return r.returncode == 0 and r.stdout.strip() == "198.51.100.1"


def test_killing_the_active_gateway_chassis_switch_fails_over_within_3_s(lab: Lab) -> None:
    w = Whoami(lab, "web", "0.0.0.0", 8080)
    try:
        for _ in range(40):  # every session up, reported
            got = _bfd(lab)
            if len(got) == 3 and all(s and set(s.values()) == {"up"} for s in got.values()):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"sessions never all up: {got}")
        time.sleep(3)  # the peers' fast timers in use (1 s while coming up)
        assert any(_reaches(lab) for _ in range(10))
        assert set(_bfd(lab)["hv1"]) == {"hv2", "hv3"}
        (sw,) = [p for p in lab.state["procs"] if p["role"] == "switch-hv2"]
        os.kill(int(sw["pid"]), signal.SIGKILL)
        t0 = time.monotonic()
        while not _reaches(lab):
            assert time.monotonic() - t0 < 3.0, f"no failover in 3 s: {_bfd(lab)}"
            time.sleep(0.1)
        took = time.monotonic() - t0
        got = _bfd(lab)
        assert got["hv1"]["hv2"] != "up" and got["hv3"]["hv2"] != "up", got
        assert got["hv1"]["hv3"] == "up", got
        print(f"failover: the outside reached the floating IP again after {took:.2f} s")
    finally:
        w.close()
