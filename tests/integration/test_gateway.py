"""North-south on real namespaces: SNAT, floating IPs and IPv6 through a router's gateway.

Two tenants with the same internal subnet (10.0.1.0/24), each behind its own
router whose gateway is on the external network `public` (198.51.100.0/24,
fd00:e1::/64), active on hv2; the workloads are on hv1.  The lab's `outside`
namespace is the upstream router (198.51.100.1, fd00:e1::1) with the server
at 203.0.113.10 and 2001:db8:ffff::10 behind it, and the lab teaches it the
route to tenant one's IPv6 subnet via that router's gateway.  The server
tells each client the address it came from: the router's gateway address
(SNAT), or a floating IP.  The routers learn the upstream router's MAC by
ARP and neighbour discovery.  Runs with vnet switches and with Open vSwitch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vnet.lab.real import Lab

from .labrig import running_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
]
SERVER = {4: "203.0.113.10", 6: "2001:db8:ffff::10"}
FIP = "198.51.100.50"
# one TCP connection: the peer's address back, then close
WHOAMI = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind((sys.argv[1],int(sys.argv[2])));s.listen(4)\n"
    "print('listening',flush=True)\n"
    "while True:\n"
    " c,a=s.accept();c.sendall(a[0].encode());c.close()\n"
)
ASK = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)\n"
    "print(c.recv(100).decode())\n"
)


def topology() -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tenants": [{"name": "ops"}, {"name": "t1"}, {"name": "t2"}],
        "chassis": [{"name": "hv1"}, {"name": "hv2"}],
        "networks": [{"name": "public", "tenant": "ops", "external": True, "physnet": "phys"}],
        "subnets": [
            {"name": "pub4", "tenant": "ops", "network": "public", "cidr": "198.51.100.0/24"},
            {"name": "pub6", "tenant": "ops", "network": "public", "cidr": "fd00:e1::/64"},
        ],
        "ports": [],
        "routers": [],
        "floating_ips": [
            {"name": "f1", "tenant": "t1", "network": "public", "ip": FIP, "port": "web1"}
        ],
    }
    for t in ("t1", "t2"):
        doc["networks"].append({"name": f"{t}-net", "tenant": t})
        doc["subnets"].append({"name": f"{t}-v4", "tenant": t, "network": f"{t}-net",
                               "cidr": "10.0.1.0/24"})  # fmt: skip
        itfs = [{"subnet": f"{t}-v4"}]
        routes = [{"cidr": "0.0.0.0/0", "nexthop": "198.51.100.1"}]
        fixed = [{"subnet": f"{t}-v4", "ip": "10.0.1.10"}]
        if t == "t1":
            doc["subnets"].append({"name": "t1-v6", "tenant": t, "network": "t1-net",
                                   "cidr": "fd00:1::/64"})  # fmt: skip
            itfs.append({"subnet": "t1-v6"})
            routes.append({"cidr": "::/0", "nexthop": "fd00:e1::1"})
            fixed.append({"subnet": "t1-v6", "ip": "fd00:1::10"})
            doc["ports"].append({"name": "web1", "tenant": t, "network": "t1-net",
                                 "chassis": "hv1",
                                 "fixed_ips": [{"subnet": "t1-v4", "ip": "10.0.1.20"}]})  # fmt: skip
        doc["routers"].append({"name": f"{t}-r", "tenant": t, "interfaces": itfs,
                               "routes": routes,
                               "gateway": {"network": "public", "chassis": ["hv2"]}})  # fmt: skip
        doc["ports"].append({"name": f"{t}-vm", "tenant": t, "network": f"{t}-net",
                             "chassis": "hv1", "fixed_ips": fixed})  # fmt: skip
    return doc


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"gateway-{request.param}")
    with running_lab(topology(), tmp, request.param) as lab:
        yield lab


def gateway(lab: Lab, router: str, key: str = "ip") -> str:
    r = subprocess.run(
        [sys.executable, "-m", "vnet", "get", "router", router, "--api", lab.state["api"],
         "-o", "json"], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    obj = got[0] if isinstance(got, list) else got
    return str(obj["gateway"][key])


class Whoami:
    """A server in `where` that tells each client its address as seen there."""

    def __init__(self, lab: Lab, where: str, addr: str, port: int) -> None:
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", lab.netns(where), sys.executable, "-c", WHOAMI, addr, str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.p.stdout is not None and self.p.stdout.readline().strip() == "listening"

    def close(self) -> None:
        self.p.kill()
        self.p.wait(10)


def ask(lab: Lab, client: str, addr: str, port: int, tries: int = 10) -> str:
    """The address the server at `addr` saw `client` come from (a few tries: the first
    packets wait for the router to learn its next hop's MAC)."""
    last = ""
    for _ in range(tries):
        r = lab.exec(client, [sys.executable, "-c", ASK, addr, str(port)], timeout=20)
        if r.returncode == 0:
            return r.stdout.strip()
        last = r.stderr[-300:]
        time.sleep(0.5)
    raise AssertionError(f"{client} -> {addr}:{port}: {last}")


@pytest.fixture
def server(lab: Lab) -> Iterator[None]:
    srv = [Whoami(lab, "outside", SERVER[4], 7001), Whoami(lab, "outside", SERVER[6], 7001)]
    try:
        yield
    finally:
        for s in srv:
            s.close()


def test_snat_two_tenants_with_one_subnet_reach_the_server_as_their_gateway(
    lab: Lab, server: None
) -> None:
    for t in ("t1", "t2"):
        assert ask(lab, f"{t}-vm", SERVER[4], 7001) == gateway(lab, f"{t}-r"), t


def test_a_floating_ip_both_ways(lab: Lab, server: None) -> None:
    assert ask(lab, "web1", SERVER[4], 7001) == FIP  # its own connections leave from it
    w = Whoami(lab, "web1", "0.0.0.0", 8080)
    try:
        assert ask(lab, "outside", FIP, 8080) == "198.51.100.1"  # untranslated in
    finally:
        w.close()


def test_ipv6_is_routed_through_the_gateway_untranslated(lab: Lab, server: None) -> None:
    assert ask(lab, "t1-vm", SERVER[6], 7001) == "fd00:1::10"
    r = lab.exec("outside", ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd00:1::10"],
                 timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_gateway_address_answers_ping_from_outside(lab: Lab) -> None:
    for t in ("t1", "t2"):
        gw = gateway(lab, f"{t}-r")
        r = lab.exec("outside", ["ping", "-c", "2", "-i", "0.2", "-W", "2", gw], timeout=30)
        assert r.returncode == 0, (t, r.stdout + r.stderr)


def test_the_routers_learned_the_upstream_router(lab: Lab, server: None) -> None:
    ask(lab, "t1-vm", SERVER[4], 7001)
    r = subprocess.run(
        [sys.executable, "-m", "vnet", "get", "neighbour", "--api", lab.state["api"]],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0 and "198.51.100.1" in r.stdout, r.stdout + r.stderr
