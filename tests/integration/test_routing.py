"""East-west routing on real namespaces: two subnets behind one router, three chassis.

examples/east-west.yaml (web1 on hv1 in the web subnets, db1 on hv2 in the db
subnets, router r1 between them), plus a third chassis hv3 with web2, a port
of the web network that takes no part in the conversation: "another
chassis", and the router's gateway chassis (north-south goes there, never
east-west).  The workloads' default routes point at their subnet's gateway
(the lab's doing); the switches route at the first hop.  The judges: ping
and TCP (iperf3) across the subnets in both families, `traceroute` naming
the router then the destination, and tshark on the underlay cables -- none
of web1 <-> db1 reaches hv3, and all of it goes straight between hv1 and
hv2.  Every test runs with vnet switches and with Open vSwitch (netdev
datapath) as the chassis' switch.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
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
]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/east-west.yaml"
WEB1 = {4: "10.1.0.11", 6: "fd00:1::11"}
WEB2 = {4: "10.1.0.12", 6: "fd00:1::12"}
DB1 = {4: "10.2.0.11", 6: "fd00:2::11"}
GW_WEB = {4: "10.1.0.1", 6: "fd00:1::1"}
GW_DB = {4: "10.2.0.1", 6: "fd00:2::1"}


def topology() -> dict[str, Any]:
    """The example, and hv3 with web2 (web network): a chassis not in the conversation,
    and the router's gateway chassis (a gateway on the external network `public`)."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["chassis"].append({"name": "hv3"})
    doc["networks"].append({"name": "public", "tenant": "shop", "external": True,
                            "physnet": "phys"})  # fmt: skip
    doc["subnets"].append({"name": "public-v4", "tenant": "shop", "network": "public",
                           "cidr": "198.51.100.0/24"})  # fmt: skip
    doc["routers"][0]["gateway"] = {"network": "public", "chassis": ["hv3"]}
    doc["ports"].append({"name": "web2", "tenant": "shop", "network": "web", "chassis": "hv3",
                         "fixed_ips": [{"subnet": "web-v4", "ip": WEB2[4]},
                                       {"subnet": "web-v6", "ip": WEB2[6]}]})  # fmt: skip
    return doc


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"routed-{request.param}")
    with running_lab(topology(), tmp, request.param) as lab:
        yield lab


def ping(lab: Lab, port: str, addr: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(port, ["ping", "-c", "3", "-i", "0.2", "-W", "1", *extra, addr], timeout=30)


def router_macs(lab: Lab) -> dict[str, str]:
    """Subnet name -> the router's MAC on it, from the model."""
    with lab.client() as c:
        subnets = {s["id"]: s["name"] for s in c.list("subnet")}
        (r1,) = c.list("router")
    return {subnets[i["subnet"]]: i["mac"] for i in r1["interfaces"]}


def test_workloads_route_across_subnets_via_their_gateway(lab: Lab) -> None:
    for port, gw in (("web1", GW_WEB), ("web2", GW_WEB), ("db1", GW_DB)):
        for v in (4, 6):
            routes = lab.exec(port, ["ip", f"-{v}", "route", "show", "default"]).stdout
            assert f"default via {gw[v]} dev eth0" in routes, (port, routes)
    for v in (4, 6):
        for src, dst in (("web1", DB1[v]), ("db1", WEB1[v]), ("web2", DB1[v])):
            r = ping(lab, src, dst)
            assert r.returncode == 0 and " 0% packet loss" in r.stdout, (src, dst, r.stdout)
            # routed once: the reply's TTL (hop limit) is one below the sender's 64
            assert re.search(r"ttl=63 ", r.stdout), r.stdout
        r = ping(lab, "web1", "db1", f"-{v}")  # by name: the workload's hosts file
        assert r.returncode == 0 and f"({DB1[v]})" in r.stdout, r.stdout + r.stderr
    # web1 knows the router's MACs as its gateways' and never resolved db1 itself
    macs = router_macs(lab)
    for v, subnet in ((4, "web-v4"), (6, "web-v6")):
        neigh = lab.exec("web1", ["ip", f"-{v}", "neigh", "show", GW_WEB[v]]).stdout
        assert macs[subnet] in neigh, (v, neigh)
        assert DB1[v] not in lab.exec("web1", ["ip", f"-{v}", "neigh", "show"]).stdout


def iperf3(lab: Lab, client: str, server: str, addr: str, *how: str) -> dict[str, Any]:
    """One iperf3 run from `client`'s workload to a one-off server in `server`'s (its
    own: a server between two runs closes its socket for a moment, refusing the next)."""
    p = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns(server), "iperf3", "-s", "-1", "-p", "5201"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        end = time.monotonic() + 10
        while ":5201 " not in lab.exec(server, ["ss", "-ltnH"]).stdout:
            assert p.poll() is None and time.monotonic() < end, "iperf3 did not listen"
            time.sleep(0.05)
        r = lab.exec(client, ["iperf3", "-c", addr, "-p", "5201", "-J", *how], timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(10)
    assert r.returncode == 0, (addr, how, r.stdout[-800:] + r.stderr)
    result: dict[str, Any] = json.loads(r.stdout)
    assert "error" not in result and "sum_received" in result["end"], r.stdout[-1500:]
    return result


def test_tcp_across_subnets_both_families(lab: Lab) -> None:
    for v in (4, 6):
        got = iperf3(lab, "web1", "db1", DB1[v], "-t", "1")["end"]
        assert got["sum_received"]["bytes"] >= 1 << 20, (v, got["sum_received"])
        # and the other way (-R: db1 sends), the same connection's path back
        got = iperf3(lab, "web1", "db1", DB1[v], "-t", "1", "-R")["end"]
        assert got["sum_received"]["bytes"] >= 1 << 20, (v, got["sum_received"])


def hops(out: str) -> dict[int, list[str]]:
    """traceroute -n: hop number -> the addresses that answered it."""
    found: dict[int, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(.*)", line)
        if m:
            found[int(m[1])] = [t for t in m[2].split() if _is_address(t)]
    return found


def _is_address(token: str) -> bool:
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False  # a round-trip time, "ms", "*", an annotation
    return True


@pytest.mark.parametrize("probe", ["udp", "icmp"])
def test_traceroute_shows_the_router_then_the_destination(lab: Lab, probe: str) -> None:
    assert shutil.which("traceroute"), "traceroute missing: `make test` installs it"
    for src, gw, dst in (("web1", GW_WEB, DB1), ("db1", GW_DB, WEB1)):
        for v in (4, 6):
            how = ["-I"] if probe == "icmp" else []
            cmd = ["traceroute", f"-{v}", "-n", "-q", "1", "-w", "1", "-m", "3", *how, dst[v]]
            r = lab.exec(src, cmd, timeout=30)
            got = hops(r.stdout)
            # the router answers the probe whose TTL it exhausts (time exceeded, from its
            # address on the sender's subnet); the destination answers the next
            assert got.get(1) == [gw[v]] and got.get(2) == [dst[v]], (src, v, r.stdout + r.stderr)
            assert 3 not in got, r.stdout  # reached in two hops: no third asked


@contextlib.contextmanager
def capture(pcap: Path, ns: str, *ifaces: str) -> Iterator[None]:
    """tshark on `ifaces` in namespace `ns` for the block (stopped by its PID)."""
    assert shutil.which("tshark"), "tshark missing: `make test` installs it"
    args = ["ip", "netns", "exec", ns, "tshark", "-q", "-w", str(pcap)]
    for i in ifaces:
        args += ["-i", i]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        for line in p.stderr:  # "Capturing on ..." once the capture runs
            if line.startswith("Capturing on"):
                break
        time.sleep(0.3)
        yield
        time.sleep(0.5)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def fields(pcap: Path, where: str, *names: str) -> list[list[str]]:
    args = ["tshark", "-r", str(pcap), "-Y", where, "-T", "fields", "-E", "separator=|"]
    for n in names:
        args += ["-e", n]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [ln.split("|") for ln in out.splitlines() if ln.strip()]


def test_east_west_goes_straight_between_the_two_chassis(lab: Lab, tmp_path: Path) -> None:
    """Routed on the sender's chassis, tunnelled to the receiver's: hv3, the router's
    gateway chassis, sees none of it."""
    with lab.client() as c:
        underlay = {ch["name"]: ch["underlay"] for ch in c.list("chassis")}
    cables, ns = lab.state["underlay_links"], lab.state["underlay_netns"]
    at_hv3, at_hv2 = tmp_path / "hv3.pcap", tmp_path / "hv2.pcap"
    with capture(at_hv3, ns, cables["hv3"]), capture(at_hv2, ns, cables["hv2"]):
        for v in (4, 6):
            assert ping(lab, "web1", DB1[v]).returncode == 0
            assert ping(lab, "db1", WEB1[v]).returncode == 0
            iperf3(lab, "web1", "db1", DB1[v], "-n", "256K")
        # the control: web1 -> web2 is switched to hv3, and the capture sees it
        assert ping(lab, "web1", WEB2[4]).returncode == 0
    pair = " || ".join(
        f"(ip{'' if v == 4 else 'v6'}.addr == {WEB1[v]} && ip{'' if v == 4 else 'v6'}.addr"
        f" == {DB1[v]})" for v in (4, 6)
    )  # fmt: skip
    assert fields(at_hv3, f"ip.addr == {WEB2[4]}", "frame.number"), "the control is missing"
    seen = fields(at_hv3, f"{pair} || ip.addr == {DB1[4]} || ipv6.addr == {DB1[6]}",
                  "ip.src", "ipv6.src")  # fmt: skip
    assert not seen, f"{len(seen)} packet(s) of web1 <-> db1 reached hv3: {seen[:5]}"
    # at hv2: every tunnel packet of the pair is from hv1 or to hv1, nothing else
    outer = fields(at_hv2, pair, "ip.src", "ip.dst")  # outer first, then IPv4 inner
    assert len(outer) >= 20, outer
    for row in outer:
        src, dst = row[0].split(",")[0], row[1].split(",")[0]
        assert {src, dst} == {underlay["hv1"], underlay["hv2"]}, row
