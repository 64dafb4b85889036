"""DHCP-addressed workloads on real namespaces: answered by the switch, from the model.

examples/east-west.yaml with `addressing: dhcp`: the workloads start with no
address and run busybox's udhcpc (a process of the lab); the IPv6 subnets
are `ipv6_mode: slaac`, so the workloads' IPv6 addresses come from the
router's advertisements (the model gives the EUI-64 address of each port's
MAC).  The judges: each workload gets the model's IPv4 address, the router
as default route, the network's MTU and the subnet's DNS servers; a renewal
(udhcpc's SIGUSR1) is acknowledged; the model's IPv6 address by SLAAC; and
the workloads ping across the router afterwards; and tshark on the
underlay cables sees no DHCP, DHCPv6 or router solicitation or
advertisement while a workload releases and gets a lease anew (a ping
across chassis is the control).  vnet switches and Open vSwitch (netdev
datapath) alike.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_routing import capture, fields
from vnet.lab.real import NETNS_ETC, Lab

from .labrig import running_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/east-west.yaml"
DNS = ["10.9.9.53", "10.9.9.54"]


def topology() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["addressing"] = "dhcp"
    for s in doc["subnets"]:
        if ":" in s["cidr"]:
            s["ipv6_mode"] = "slaac"
        else:
            s["dns_nameservers"] = DNS
            s["lease_time"] = 120
    for p in doc["ports"]:  # the IPv6 address is the model's EUI-64 one
        p["fixed_ips"] = [
            f if "v4" in f["subnet"] else {"subnet": f["subnet"]} for f in p["fixed_ips"]
        ]
    return doc


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"dhcp-{request.param}")
    with running_lab(topology(), tmp, request.param, tx_off=False) as lab:
        yield lab


def model_ports(lab: Lab) -> dict[str, dict[str, Any]]:
    with lab.client() as c:
        subnets = {s["id"]: s for s in c.list("subnet")}
        nets = {n["id"]: n for n in c.list("network")}
        out = {}
        for p in c.list("port"):
            ips = {(6 if ":" in f["ip"] else 4): f["ip"] for f in p["fixed_ips"]}
            gw = {(6 if ":" in subnets[f["subnet"]]["cidr"] else 4): subnets[f["subnet"]]["gateway"] for f in p["fixed_ips"]}  # fmt: skip
            out[p["name"]] = {"ip": ips, "gw": gw, "mtu": nets[p["network"]]["mtu"]}
        return out


def until(what: Callable[[], bool], timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.3)
    return what()


def test_workloads_get_the_models_addresses_routes_mtu_and_dns(lab: Lab) -> None:
    for port, m in model_ports(lab).items():
        ok = until(lambda port=port, m=m: f"inet {m['ip'][4]}/24" in lab.exec(port, ["ip", "-4", "addr", "show", "eth0"]).stdout)  # type: ignore[misc]  # fmt: skip
        assert ok, (
            port,
            lab.exec(port, ["ip", "addr"]).stdout,
            (lab.dir / f"dhcp-{port}.log").read_text(),
        )
        routes = lab.exec(port, ["ip", "-4", "route", "show", "default"]).stdout
        assert f"default via {m['gw'][4]} dev eth0" in routes, (port, routes)
        assert f"mtu {m['mtu']} " in lab.exec(port, ["ip", "link", "show", "eth0"]).stdout
        resolv = (NETNS_ETC / lab.netns(port) / "resolv.conf").read_text()
        assert resolv == "".join(f"nameserver {d}\n" for d in DNS)
        ok6 = until(lambda port=port, m=m: m["ip"][6] in lab.exec(port, ["ip", "-6", "addr", "show", "eth0"]).stdout)  # type: ignore[misc]  # fmt: skip
        assert ok6, (port, lab.exec(port, ["ip", "-6", "addr"]).stdout)


def test_a_renewal_is_acknowledged(lab: Lab) -> None:
    (entry,) = [e for e in lab.state["procs"] if e["role"] == "dhcp-web1"]
    log = lab.dir / "dhcp-web1.log"
    assert until(lambda: "vnet-dhcp bound" in log.read_text())
    os.kill(int(entry["pid"]), signal.SIGUSR1)  # udhcpc: renew now (unicast to the server)
    assert until(lambda: "vnet-dhcp renew" in log.read_text(), 15), log.read_text()


def test_workloads_ping_across_the_router(lab: Lab) -> None:
    m = model_ports(lab)
    for v in (4, 6):
        for src, dst in (("web1", "db1"), ("db1", "web1")):
            until(lambda src=src, v=v: m[src]["ip"][v] in lab.exec(src, ["ip", "addr"]).stdout)  # type: ignore[misc]
            r = lab.exec(
                src, ["ping", "-c", "3", "-i", "0.2", "-W", "1", m[dst]["ip"][v]], timeout=30
            )
            assert r.returncode == 0, (v, src, dst, r.stdout, r.stderr)


def test_no_dhcp_crosses_the_underlay(lab: Lab, tmp_path: Path) -> None:
    (entry,) = [e for e in lab.state["procs"] if e["role"] == "dhcp-web1"]
    log = lab.dir / "dhcp-web1.log"
    m = model_ports(lab)
    cables, ns = lab.state["underlay_links"], lab.state["underlay_netns"]
    pcap = tmp_path / "underlay.pcap"
    with capture(pcap, ns, *cables.values()):
        bound = log.read_text().count("vnet-dhcp bound")
        os.kill(int(entry["pid"]), signal.SIGUSR2)  # udhcpc: release the lease
        assert until(
            lambda: "vnet-dhcp deconfig" in log.read_text().split("vnet-dhcp bound")[-1], 10
        )
        os.kill(int(entry["pid"]), signal.SIGUSR1)  # and ask anew: DISCOVER, REQUEST
        assert until(lambda: log.read_text().count("vnet-dhcp bound") > bound, 20), log.read_text()
        r = lab.exec(
            "web1", ["ping", "-c", "3", "-i", "0.2", "-W", "1", m["db1"]["ip"][4]], timeout=30
        )
        assert r.returncode == 0, r.stdout  # the control: across chassis, through the underlay
    assert fields(pcap, f"ip.addr == {m['db1']['ip'][4]}", "frame.number"), "the control is missing"
    seen = fields(
        pcap, "dhcp || dhcpv6 || icmpv6.type == 133 || icmpv6.type == 134", "frame.number",
        "frame.time_relative", "ip.src", "ip.dst", "eth.src", "dhcp.option.dhcp", "icmpv6.type",
    )  # fmt: skip
    assert not seen, f"{len(seen)} DHCP/RS/RA frame(s) crossed the underlay: {seen}"
