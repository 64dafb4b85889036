"""examples/routed.yaml as a user runs it: DHCP and SLAAC addresses, SNAT out, the
floating IP in, IPv6 out untranslated, the router in traceroute, and routed TCP
with the workloads' offloads on.

The routers learn the upstream router's MAC when the first packet needs it, so
the first probe may be lost: each check allows a few.  vnet switches (test_gateway
covers Open vSwitch chassis).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from vnet.lab.real import Lab

from .labrig import running_lab
from .test_routing import iperf3

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
    pytest.mark.skipif(shutil.which("busybox") is None, reason="needs busybox (udhcpc)"),
]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples/routed.yaml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("routed-example")
    with running_lab(yaml.safe_load(EXAMPLE.read_text()), tmp, "vnet", tx_off=False) as lab:
        yield lab


def ping(lab: Lab, where: str, addr: str) -> str:
    r = lab.exec(where, ["ping", "-c", "4", "-i", "0.3", "-W", "2", addr], timeout=30)
    assert " 0 received" not in r.stdout and r.returncode == 0, (where, addr, r.stdout)
    return r.stdout


def test_the_workloads_have_their_addresses_by_dhcp_and_slaac(lab: Lab) -> None:
    with lab.client() as c:
        ports = {p["name"]: p for p in c.list("port")}
    for name in ("web1", "db1"):
        want = [f" {f['ip']}/" for f in ports[name]["fixed_ips"]]
        end = time.monotonic() + 20  # SLAAC: the kernel solicits a router at link up
        while True:
            got = lab.exec(name, ["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
            if all(w in got for w in want) or time.monotonic() > end:
                break
            time.sleep(0.5)
        assert all(w in got for w in want), (name, want, got)


def test_out_by_snat_in_by_the_floating_ip_and_ipv6_untranslated(lab: Lab) -> None:
    ping(lab, "db1", "203.0.113.10")
    ping(lab, "outside", "198.51.100.50")
    ping(lab, "web1", "2001:db8:ffff::10")


def test_traceroute_shows_the_router_between_the_subnets(lab: Lab) -> None:
    r = lab.exec("web1", ["traceroute", "-n", "-w", "2", "-q", "1", "10.2.0.11"], timeout=60)
    hops = [line.split()[1] for line in r.stdout.splitlines()[1:] if len(line.split()) > 1]
    assert hops[:2] == ["10.1.0.1", "10.2.0.11"], r.stdout


def test_routed_tcp_with_the_workloads_offloads_on(lab: Lab) -> None:
    # segmentation offload on: the routers judge a GSO frame by its segments, not the
    # super-frame (which is larger than any MTU)
    for addr in ("10.2.0.11", "10.1.0.11"):
        client = "web1" if addr == "10.2.0.11" else "db1"
        server = "db1" if client == "web1" else "web1"
        got = iperf3(lab, client, server, addr, "-t", "1")["end"]
        assert got["sum_received"]["bytes"] >= 1 << 20, (client, got["sum_received"])
