"""Too big for the next network, on real namespaces: the router's answer and PMTU discovery.

examples/east-west.yaml with the db network's MTU at 1400 (db1's link gets
it too, the lab's doing); web1's network keeps what the tunnels carry (1442).
web1 (hv1) sends to db1 (hv2) across r1: an IPv4 packet with DF longer than
1400 bytes gets "Frag needed and DF set (mtu = 1400)" from the router's
address on web1's subnet, an IPv6 one "Packet too big: mtu=1400", and web1's
kernel learns the path MTU (`ip route get`), after which larger datagrams
it fragments itself reach db1.  IPv4 without DF is dropped and counted by
the controller.  With vnet switches and with Open vSwitch (netdev datapath)
as the chassis' switch: `check_pkt_larger` runs in both.
"""

from __future__ import annotations

import os
import subprocess
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
MTU = 1400
DB1 = {4: "10.2.0.11", 6: "fd00:2::11"}
GW_WEB = {4: "10.1.0.1", 6: "fd00:1::1"}
# an echo of this much data is 1438 bytes of IP: within web1's link (1442), over db's 1400
SIZE4 = 1410
SIZE6 = 1390  # 1390 + 8 + 40 = 1438 bytes of IPv6


def topology() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for n in doc["networks"]:
        if n["name"] == "db":
            n["mtu"] = MTU
    return doc


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"too-big-{request.param}")
    with running_lab(topology(), tmp, request.param) as lab:
        yield lab


def ping(lab: Lab, v: int, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.exec("web1", ["ping", f"-{v}", "-c", "3", "-i", "0.3", "-W", "1", *args], timeout=30)


def forget_path_mtu(lab: Lab) -> None:
    for v in (4, 6):
        r = lab.exec("web1", ["ip", f"-{v}", "route", "flush", "cache"])
        assert r.returncode == 0, r.stderr


def route_get(lab: Lab, v: int) -> str:
    r = lab.exec("web1", ["ip", f"-{v}", "route", "get", DB1[v]])
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_links_have_their_networks_mtu(lab: Lab) -> None:
    db = lab.exec("db1", ["ip", "-o", "link", "show", "eth0"]).stdout
    web = lab.exec("web1", ["ip", "-o", "link", "show", "eth0"]).stdout
    assert f" mtu {MTU} " in db, db
    assert " mtu 1442 " in web, web


def test_ipv4_without_df_is_dropped_and_counted(lab: Lab) -> None:
    forget_path_mtu(lab)
    with lab.client() as c:
        before = c.status()["punts"].get("too_big_dropped_fragmentable", 0)
    r = ping(lab, 4, "-M", "dont", "-s", str(SIZE4), DB1[4])
    assert r.returncode != 0 and "100% packet loss" in r.stdout, r.stdout
    assert "Frag needed" not in r.stdout
    with lab.client() as c:
        after = c.status()["punts"].get("too_big_dropped_fragmentable", 0)
    assert after - before == 3
    # as long as the network's MTU: routed
    r = ping(lab, 4, "-M", "dont", "-s", str(MTU - 28), DB1[4])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout


def test_ipv4_with_df_gets_fragmentation_needed_with_the_mtu(lab: Lab) -> None:
    forget_path_mtu(lab)
    assert f"mtu {MTU}" not in route_get(lab, 4)
    r = ping(lab, 4, "-M", "do", "-s", str(SIZE4), DB1[4])
    assert r.returncode != 0, r.stdout
    assert f"From {GW_WEB[4]} icmp_seq=1 Frag needed and DF set (mtu = {MTU})" in r.stdout, (
        r.stdout + r.stderr
    )
    # web1 learned the path's MTU: the next ones it refuses itself, as too long
    assert f"mtu {MTU}" in route_get(lab, 4)
    # exactly the MTU passes with DF; longer datagrams web1 now fragments itself pass
    r = ping(lab, 4, "-M", "do", "-s", str(MTU - 28), DB1[4])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
    r = ping(lab, 4, "-s", "3000", DB1[4])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
    with lab.client() as c:
        assert c.status()["punts"].get("icmp_too_big", 0) >= 1


def test_ipv6_gets_packet_too_big_and_path_mtu_discovery_works(lab: Lab) -> None:
    forget_path_mtu(lab)
    assert f"mtu {MTU}" not in route_get(lab, 6)
    r = ping(lab, 6, "-M", "do", "-s", str(SIZE6), DB1[6])
    assert r.returncode != 0, r.stdout
    assert f"From {GW_WEB[6]} icmp_seq=1 Packet too big: mtu={MTU}" in r.stdout, r.stdout + r.stderr
    assert f"mtu {MTU}" in route_get(lab, 6)
    # the source fragments to the path's MTU from now on: large echoes go through
    r = ping(lab, 6, "-s", "3000", DB1[6])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
    r = ping(lab, 6, "-s", str(MTU - 48), DB1[6])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
