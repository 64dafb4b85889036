"""The vnet switch on real ports: namespaces, veth pairs, ping, VLANs, port security."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnet.testing.netns import Lab

from .switch_rig import SwitchRig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def hosts(
    lab: Lab, n: int, specs: list[str] | None = None, subnet: str = "10.77.0"
) -> tuple[list[str], list[str]]:
    """n namespaces h0..; returns (namespaces, port specs for the switch)."""
    nss, ports = [], []
    for i in range(n):
        ns = lab.ns(f"h{i}")
        sw_end, _ = lab.veth(
            f"v{i}", ns, [f"{subnet}.{i + 1}/24"], mac=f"02:00:00:00:77:{i + 1:02x}"
        )
        nss.append(ns)
        ports.append(sw_end + (("," + specs[i]) if specs and specs[i] else ""))
    return nss, ports


def ping(lab: Lab, ns: str, addr: str, count: int = 3) -> bool:
    return (
        lab.exec(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", addr, check=False).returncode
        == 0
    )


def test_ping_through_normal(lab: Lab, tmp_path: Path) -> None:
    nss, ports = hosts(lab, 3)
    sw = SwitchRig(lab, tmp_path)
    sw.start(ports)
    assert ping(lab, nss[0], "10.77.0.2"), sw.log()
    assert ping(lab, nss[2], "10.77.0.1"), sw.log()
    fdb = sw.ctl("fdb")
    assert {e["mac"] for e in fdb} >= {"02:00:00:00:77:01", "02:00:00:00:77:02"}


def test_tcp_with_default_offloads(lab: Lab, tmp_path: Path) -> None:
    nss, ports = hosts(lab, 2)
    sw = SwitchRig(lab, tmp_path)
    sw.start(ports)
    lab.spawn("iperf3", "-s", "-1", "-B", "10.77.0.2", ns=nss[1])
    time.sleep(0.5)
    r = lab.exec(nss[0], "iperf3", "-c", "10.77.0.2", "-t", "2", "-J", check=False, timeout=60)
    assert r.returncode == 0, r.stdout[-2000:] + sw.log()
    bps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
    assert bps > 50e6, bps  # offloaded TCP passes whole; without the vnet header it stalls


def test_vlan_isolation_between_access_ports(lab: Lab, tmp_path: Path) -> None:
    nss, ports = hosts(lab, 4, ["tag=10", "tag=10", "tag=20", "tag=20"])
    sw = SwitchRig(lab, tmp_path)
    sw.start(ports)
    assert ping(lab, nss[0], "10.77.0.2")
    assert ping(lab, nss[2], "10.77.0.4")
    assert not ping(lab, nss[0], "10.77.0.3", count=2)
    assert not ping(lab, nss[1], "10.77.0.4", count=2)
    show = sw.ctl("show")
    by_name = {p["name"]: p for p in show["ports"]}
    # nothing from VLAN 10 was ever delivered to a VLAN 20 port: the only frames
    # h2/h3 received are their own VLAN's
    fdb = sw.ctl("fdb")
    assert all((e["vlan"] == 10) == (e["port"] in (1, 2)) for e in fdb), fdb
    assert by_name[ports[2].split(",")[0]]["stats"]["tx_packets"] > 0


def wire(lab: Lab, ns: str, iface: str, frames: list[bytes], listen: float = 1.5) -> list[Ether]:
    """Send raw frames from `iface` in `ns`; the frames that came back, decoded by scapy."""
    args = [sys.executable, "-m", "vnet.testing.rawio", iface, "--listen", str(listen)]
    for f in frames:
        args += ["--send", f.hex()]
    r = lab.exec(ns, *args)
    return [Ether(bytes.fromhex(line)) for line in r.stdout.split()]


def arp_req(src_mac: str, spa: str, tpa: str, vlan: int | None = None) -> bytes:
    eth = Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(eth / ARP(op=1, hwsrc=src_mac, psrc=spa, pdst=tpa))


def arp_replies(frames: list[Ether], spa: str) -> list[Ether]:
    return [f for f in frames if ARP in f and f[ARP].op == 2 and f[ARP].psrc == spa]


def test_trunk_carries_two_vlans(lab: Lab, tmp_path: Path) -> None:
    # h0 in VLAN 10 and h1 in VLAN 20 on access ports, both 10.5.0.1 (same
    # address: only the VLAN tells them apart); a trunk to namespace ht
    h0, h1, t = lab.ns("h0"), lab.ns("h1"), lab.ns("ht")
    a, _ = lab.veth("a", h0, ["10.5.0.1/24"], mac="02:00:00:00:10:01")
    b, _ = lab.veth("b", h1, ["10.5.0.1/24"], mac="02:00:00:00:20:01")
    c, peer = lab.veth("c", t)
    sw = SwitchRig(lab, tmp_path)
    sw.start([f"{a},tag=10", f"{b},tag=20", f"{c},trunks=10+20,port_security=false"])
    me = "02:00:00:00:99:01"
    got10 = wire(lab, t, peer, [arp_req(me, "10.5.0.9", "10.5.0.1", vlan=10)])
    r10 = arp_replies(got10, "10.5.0.1")
    assert r10 and all(f[Dot1Q].vlan == 10 and f[ARP].hwsrc == "02:00:00:00:10:01" for f in r10), (
        sw.log()
    )
    got20 = wire(lab, t, peer, [arp_req(me, "10.5.0.9", "10.5.0.1", vlan=20)])
    r20 = arp_replies(got20, "10.5.0.1")
    assert r20 and all(f[Dot1Q].vlan == 20 and f[ARP].hwsrc == "02:00:00:00:20:01" for f in r20)
    # VLAN 30 is not on the trunk; untagged frames have no native VLAN: both refused
    assert not arp_replies(
        wire(lab, t, peer, [arp_req(me, "10.5.0.9", "10.5.0.1", vlan=30)], 1.0), "10.5.0.1"
    )
    assert not arp_replies(
        wire(lab, t, peer, [arp_req(me, "10.5.0.9", "10.5.0.1")], 1.0), "10.5.0.1"
    )
    assert sw.drops().get("vlan_not_allowed", 0) >= 2


def test_port_security_drops_forged_mac_and_spoofed_arp(lab: Lab, tmp_path: Path) -> None:
    nss, ports = hosts(lab, 2, ["mac=02:00:00:00:77:01,ip=10.77.0.1", ""])
    sw = SwitchRig(lab, tmp_path)
    sw.start(ports)
    assert ping(lab, nss[0], "10.77.0.2")
    inner = "pv0" + lab.tag
    me = "02:00:00:00:77:01"
    # forged source MAC
    forged = wire(lab, nss[0], inner, [arp_req("02:00:00:00:77:99", "10.77.0.1", "10.77.0.2")])
    assert not arp_replies(forged, "10.77.0.2")
    assert sw.drops().get("forged_transmit", 0) >= 1
    # spoofed ARP: the port's own MAC claiming an address it is not allowed
    spoofed = wire(
        lab,
        nss[0],
        inner,
        [arp_req(me, "10.77.0.2", "10.77.0.2"), arp_req(me, "10.77.0.50", "10.77.0.2")],
    )
    assert not arp_replies(spoofed, "10.77.0.2")
    assert sw.drops().get("arp_spoof", 0) >= 2
    # and the honest request still works
    assert arp_replies(
        wire(lab, nss[0], inner, [arp_req(me, "10.77.0.1", "10.77.0.2")]), "10.77.0.2"
    )
