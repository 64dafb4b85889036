"""External networks on real namespaces: ports on two chassis, the lab's physical edge.

A lab file with two external networks on one physnet -- `flat` (untagged)
and `tagged` (VLAN 100) -- and a port of each on hv1 and on hv2.  The lab
cables each chassis' uplink (`up-phys`, filled in by the lab) to its
physical switch and puts the upstream router in the `outside` namespace:
the subnets' gateways, forwarding on, the server at 203.0.113.10 and
2001:db8:ffff::10.  Each port pings the gateway, the server and the other
port, and tshark on the underlay cables sees none of it: the physical
network carried it.  Runs with vnet switches and with Open vSwitch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.lab.real import Lab

from .labrig import running_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
]
VNET = [sys.executable, "-m", "vnet"]
SERVER = {4: "203.0.113.10", 6: "2001:db8:ffff::10"}
# the ports' and the outside's addresses (tshark finds them inside a tunnel's frames too)
OURS = ("ip.addr==198.51.0.0/16 or ip.addr==203.0.113.0/24 or ipv6.addr==fd00::/16"
        " or ipv6.addr==2001:db8:ffff::/48")  # fmt: skip
NETS = {"flat": (None, 1), "tagged": (100, 2)}  # name -> (vlan, third octet)


def topology() -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenants": [{"name": "t"}],
        "chassis": [{"name": "hv1"}, {"name": "hv2"}],
        "networks": [],
        "subnets": [],
        "ports": [],
    }
    for name, (vlan, o) in NETS.items():
        net: dict[str, Any] = {"name": name, "tenant": "t", "external": True, "physnet": "phys"}
        if vlan:
            net["vlan"] = vlan
        doc["networks"].append(net)
        doc["subnets"] += [
            {"name": f"{name}4", "tenant": "t", "network": name, "cidr": f"198.51.{o}.0/24"},
            {"name": f"{name}6", "tenant": "t", "network": name, "cidr": f"fd00:e{o}::/64"},
        ]
        for i, ch in ((10, "hv1"), (11, "hv2")):
            doc["ports"].append({"name": f"{name}-{ch}", "tenant": "t", "network": name,
                                 "chassis": ch,
                                 "fixed_ips": [{"subnet": f"{name}4", "ip": f"198.51.{o}.{i}"},
                                               {"subnet": f"{name}6", "ip": f"fd00:e{o}::{i}"}]})  # fmt: skip
    return doc


def addr(net: str, ch: str, v: int) -> str:
    o = NETS[net][1]
    i = 10 if ch == "hv1" else 11
    return f"198.51.{o}.{i}" if v == 4 else f"fd00:e{o}::{i}"


def gateway(net: str, v: int) -> str:
    o = NETS[net][1]
    return f"198.51.{o}.1" if v == 4 else f"fd00:e{o}::1"


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"external-{request.param}")
    with running_lab(topology(), tmp, request.param) as lab:
        yield lab


def ping(lab: Lab, port: str, dst: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(port, ["ping", "-c", "3", "-i", "0.2", "-W", "1", dst], timeout=30)


def test_ports_reach_the_outside_and_each_other_by_the_physical_network(lab: Lab) -> None:
    ns = lab.state["underlay_netns"]
    cables = list(lab.state["underlay_links"].values())
    caps = []
    for i, cable in enumerate(cables):
        out = Path(lab.dir) / f"underlay{i}.pcap"
        caps.append((out, subprocess.Popen(
            ["ip", "netns", "exec", ns, "tshark", "-q", "-i", cable, "-w", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))  # fmt: skip
    time.sleep(2)
    try:
        for net in NETS:
            for ch, other in (("hv1", "hv2"), ("hv2", "hv1")):
                port = f"{net}-{ch}"
                for v in (4, 6):
                    for dst in (gateway(net, v), SERVER[v], addr(net, other, v)):
                        r = ping(lab, port, dst)
                        assert r.returncode == 0 and " 0% packet loss" in r.stdout, (
                            port, dst, r.stdout + r.stderr)  # fmt: skip
    finally:
        time.sleep(1)
        for _, p in caps:
            p.terminate()
            p.wait(10)
    for out, _ in caps:
        seen = subprocess.run(["tshark", "-r", str(out), "-Y", OURS],
                              capture_output=True, text=True, timeout=60).stdout  # fmt: skip
        assert not seen.strip(), seen


def test_outside_is_reachable_by_lab_exec(lab: Lab) -> None:
    r = lab.exec("outside", ["ip", "-4", "addr", "show", "dev", "lo"], timeout=30)
    assert r.returncode == 0 and SERVER[4] in r.stdout, r.stdout + r.stderr


def test_a_physnet_the_lab_cannot_cable_is_refused_naming_the_field(tmp_path: Path) -> None:
    doc = topology()
    doc["networks"][0]["physnet"] = "a-very-long-physnet"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = subprocess.run([*VNET, "lab", "up", str(f), "--dir", str(tmp_path / "lab")],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode != 0 and "physnet" in r.stderr, r.stderr
    assert not (tmp_path / "lab" / "state.json").exists()
