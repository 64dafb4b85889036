"""BGP to the physical network on real namespaces: FRR speakers on the chassis, FRR as the
lab's upstream router in `outside`, driven by vnet (vnet.bgp, vnet.lab.bgp).

Two chassis, each with an uplink on physnet `phys` and a BGP speaker there
(hv1 AS 65101 at 198.51.100.201 / fd00:e1::201, hv2 AS 65102 at .202 / ::202),
peering with the outside (AS 65000 at 198.51.100.1 / fd00:e1::1, the external
subnets' gateways).  Router t1-r's gateway is active on hv2, standby on hv1;
it advertises its floating IPs and its untranslated subnets (IPv6).  web1's
floating IP is distributed (web1's chassis, hv1, has the physnet); a floating
IP of port forwardings is the gateway's.  Runs with vnet switches and with Open
vSwitch (the speakers are beside the switch, on a cable of their own).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vnet.bgp.speaker import vtysh
from vnet.lab.bgp import frr_dir, vtysh_cmd
from vnet.lab.real import Lab

from .labrig import running_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
    pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs frr"),
]
ADDR = {"hv1": ("198.51.100.201", "fd00:e1::201"), "hv2": ("198.51.100.202", "fd00:e1::202")}
ASN = {"hv1": 65101, "hv2": 65102}
FIP = "198.51.100.50"  # web1's, distributed: hv1's
PF_FIP = "198.51.100.60"  # port forwardings: the gateway's


def topology() -> dict[str, Any]:
    peers = [{"ip": "198.51.100.1", "asn": 65000}, {"ip": "fd00:e1::1", "asn": 65000}]
    chassis = [
        {"name": n, "physnets": {"phys": "up-phys"},
         "bgp": {"asn": ASN[n], "physnets": {"phys": {"addresses": list(ADDR[n]), "peers": peers}}}}
        for n in ("hv1", "hv2")
    ]  # fmt: skip
    return {
        "tenants": [{"name": "ops"}, {"name": "t1"}],
        "chassis": chassis,
        "networks": [
            {"name": "public", "tenant": "ops", "external": True, "physnet": "phys"},
            {"name": "t1-net", "tenant": "t1"},
        ],
        "subnets": [
            {
                "name": "pub4",
                "tenant": "ops",
                "network": "public",
                "cidr": "198.51.100.0/24",
                "gateway": "198.51.100.1",
            },
            {
                "name": "pub6",
                "tenant": "ops",
                "network": "public",
                "cidr": "fd00:e1::/64",
                "gateway": "fd00:e1::1",
            },
            {"name": "t1-v4", "tenant": "t1", "network": "t1-net", "cidr": "10.0.1.0/24"},
            {"name": "t1-v6", "tenant": "t1", "network": "t1-net", "cidr": "fd00:1::/64"},
        ],
        "ports": [
            {
                "name": "web1",
                "tenant": "t1",
                "network": "t1-net",
                "chassis": "hv1",
                "fixed_ips": [{"subnet": "t1-v4", "ip": "10.0.1.20"}],
            },
        ],
        "routers": [
            {
                "name": "t1-r",
                "tenant": "t1",
                "advertise": ["floating_ips", "subnets"],
                "interfaces": [{"subnet": "t1-v4"}, {"subnet": "t1-v6"}],
                "gateway": {"network": "public", "chassis": ["hv2", "hv1"]},
            },
        ],
        "floating_ips": [
            {"name": "f1", "tenant": "t1", "network": "public", "ip": FIP, "port": "web1"}
        ],
    }


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"bgp-{request.param}")
    with running_lab(topology(), tmp, request.param) as lab:
        yield lab


def paths(lab: Lab, prefix: str) -> list[tuple[str, str, bool]]:
    """The outside's BGP paths to `prefix`: (next hop, AS path, best)."""
    fam = "ipv6" if ":" in prefix else "ipv4"
    out = vtysh_cmd(lab, f"show bgp {fam} unicast {prefix}").stdout
    if "Network not in table" in out:
        return []
    got = []
    # each path: its AS path line, then its next hop line ("  ADDR from ..."), then its status
    for block in re.split(r"\n  (?=\S)", out)[1:]:
        lines = block.splitlines()
        if len(lines) < 2 or " from " not in lines[1]:
            continue  # "Not advertised to any peer" and the like
        got.append((lines[1].split()[0], lines[0].strip(), "best" in block))
    return got


def table(lab: Lab, fam: str = "ip") -> dict[str, list[tuple[str, str]]]:
    """`show ip bgp` (or `show bgp ipv6`) in the outside: prefix -> [(status, next hop)]."""
    cmd = "show ip bgp" if fam == "ip" else "show bgp ipv6 unicast"
    out: dict[str, list[tuple[str, str]]] = {}
    prefix = ""
    for line in vtysh_cmd(lab, cmd).stdout.splitlines():
        if not line.startswith("*"):
            continue
        status, rest = line[:3].strip(), line[3:].split()
        if rest and "/" in rest[0]:
            prefix, rest = rest[0], rest[1:]
        if rest:
            out.setdefault(prefix, []).append((status, rest[0]))
    return out


def bfd_up(lab: Lab, peer: str) -> bool:
    """The outside's BFD session with `peer` is up."""
    rows = [r.split() for r in vtysh_cmd(lab, "show bfd peers brief").stdout.splitlines()]
    return any(len(r) >= 4 and r[2] == peer and r[3] == "up" for r in rows)


def wait_for(lab: Lab, prefix: str, present: bool, timeout: float) -> float:
    """Seconds until the outside has (or has no more) a route to `prefix`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if bool(paths(lab, prefix)) == present:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(
        f"{prefix} {'not learned' if present else 'still there'} after {timeout} s"
    )


def best(lab: Lab, prefix: str) -> tuple[str, str] | None:
    """The outside's best path to `prefix` (next hop, AS path), if any."""
    got = [(hop, path) for hop, path, is_best in paths(lab, prefix) if is_best]
    return got[0] if got else None


def becomes(lab: Lab, prefix: str, want: tuple[str, str], timeout: float) -> float:
    """Seconds until the outside's best path to `prefix` is `want` (a path is chosen
    best a moment after it is learned)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if best(lab, prefix) == want:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{prefix}: best {best(lab, prefix)}, not {want} after {timeout} s")


def test_a_distributed_floating_ip_is_advertised_by_its_ports_chassis(lab: Lab) -> None:
    wait_for(lab, f"{FIP}/32", True, 30)  # the sessions come up
    becomes(lab, f"{FIP}/32", (ADDR["hv1"][0], "65101"), 5)
    assert len(paths(lab, f"{FIP}/32")) == 1  # the gateway chassis does not advertise it
    assert table(lab)[f"{FIP}/32"] == [("*>", ADDR["hv1"][0])]


def test_a_floating_ip_within_2s_of_creation_and_gone_within_2s_of_deletion(lab: Lab) -> None:
    wait_for(lab, f"{FIP}/32", True, 30)
    with lab.client() as c:
        c.create("floating_ip", name="pf1", tenant="t1", network="public", ip=PF_FIP,
                 port_forwardings=[{"protocol": "tcp", "external_port": 8080, "port": "web1",
                                    "internal_port": 80}])  # fmt: skip
        took = wait_for(lab, f"{PF_FIP}/32", True, 10)
        assert took <= 2.0, took
        # the gateway's: the active gateway chassis as is, the standby prepended once (the
        # two speakers' updates come in either order)
        want = {(ADDR["hv2"][0], "65102", True), (ADDR["hv1"][0], "65101 65101", False)}
        end = time.monotonic() + 2.0
        while set(paths(lab, f"{PF_FIP}/32")) != want and time.monotonic() < end:
            time.sleep(0.05)
        assert set(paths(lab, f"{PF_FIP}/32")) == want
        # as `show ip bgp` lists it: the best path ("*>") via hv2
        assert ("*>", ADDR["hv2"][0]) in table(lab)[f"{PF_FIP}/32"]
        c.delete("floating_ip", "pf1", tenant="t1")
        took = wait_for(lab, f"{PF_FIP}/32", False, 10)
        assert took <= 2.0, took
    assert f"{PF_FIP}/32" not in table(lab)
    assert paths(lab, f"{FIP}/32")  # the other one stays


def test_an_ipv6_subnet_is_advertised_and_withdrawn(lab: Lab) -> None:
    prefix = "fd00:1::/64"
    becomes(lab, prefix, (ADDR["hv2"][1], "65102"), 30)
    assert "fd00:1::/64" in table(lab, "ipv6")
    with lab.client() as c:
        c.update("router", "t1-r", {"advertise": ["floating_ips"]}, tenant="t1")
        took = wait_for(lab, prefix, False, 10)
        assert took <= 2.0, took
        assert paths(lab, f"{FIP}/32")  # floating IPs still advertised
        c.update("router", "t1-r", {"advertise": ["floating_ips", "subnets"]}, tenant="t1")
        took = wait_for(lab, prefix, True, 10)
        assert took <= 2.0, took
    # the IPv4 subnet is translated (snat): never advertised
    assert not paths(lab, "10.0.1.0/24")


def test_a_silent_speakers_routes_go_in_about_a_second(lab: Lab) -> None:
    """hv2's bgpd and bfdd stopped (SIGSTOP: no TCP reset, no BFD packet): the outside's
    BFD finds it silent and its routes go, long before the 9 s hold time -- the standby's
    prepended route is then the best; back when they run again."""
    prefix = "fd00:1::/64"
    becomes(lab, prefix, (ADDR["hv2"][1], "65102"), 30)
    end = time.monotonic() + 30
    # BFD comes up after the session (its slow start: a packet a second until up)
    while not bfd_up(lab, ADDR["hv2"][1]) and time.monotonic() < end:
        time.sleep(0.1)
    assert bfd_up(lab, ADDR["hv2"][1])
    roles = ("frr-hv2-bgpd", "frr-hv2-bfdd")
    pids = [int(p["pid"]) for p in lab.state["procs"] if p["role"] in roles]
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        took = becomes(lab, prefix, (ADDR["hv1"][1], "65101 65101"), 10)
        assert took <= 2.0, took  # BFD: 3 x 300 ms, not the 9 s hold time
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    becomes(lab, prefix, (ADDR["hv2"][1], "65102"), 30)


def test_a_chassis_bgp_change_is_reloaded_into_its_frr(lab: Lab) -> None:
    """hv1's BFD turned off in the model: its speaker reloads FRR's configuration
    (frr-reload.py) -- the sessions lose their BFD profile -- and its routes stay or
    come back once the outside has re-established the session."""
    hv1 = frr_dir(lab, "hv1")
    assert "bfd profile vnet" in vtysh(hv1, "show running-config").stdout
    peers = [{"ip": "198.51.100.1", "asn": 65000}, {"ip": "fd00:e1::1", "asn": 65000}]
    bgp = {"asn": 65101, "bfd": False,
           "physnets": {"phys": {"addresses": list(ADDR["hv1"]), "peers": peers}}}  # fmt: skip
    with lab.client() as c:
        c.update("chassis", "hv1", {"bgp": bgp})
    end = time.monotonic() + 10
    while "bfd profile vnet" in vtysh(hv1, "show running-config").stdout:
        assert time.monotonic() < end, "hv1's FRR still has BFD on its sessions"
        time.sleep(0.1)
    conf = vtysh(hv1, "show running-config").stdout
    assert "router bgp 65101" in conf and "route-map vnet-out-phys" in conf
    becomes(lab, f"{FIP}/32", (ADDR["hv1"][0], "65101"), 30)
