"""OpenFlow 1.3 conformance on real ports, judged by Open vSwitch's own tool.

The switch runs as a plain OpenFlow switch (port security off, fail mode
secure) between two namespaces whose interfaces have IPv6 off and no
addresses, so nothing but the test's frames crosses it: then `ovs-ofctl
dump-tables` must show exactly the lookups and matches the test caused, and
tagged frames of every kind must arrive as many as were sent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.sctp import SCTP

from vnet.testing.netns import Lab

from .switch_rig import SwitchRig
from .test_interop import free_port, ofctl

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

A, B = "02:00:00:00:91:01", "02:00:00:00:91:02"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def quiet_hosts(lab: Lab, security: bool = False) -> tuple[list[str], list[str]]:
    """Two namespaces whose interfaces send nothing by themselves (no IPv6, no address)."""
    nss, ports = [], []
    for i, mac in enumerate((A, B)):
        ns = lab.ns(f"q{i}")
        lab.exec(
            ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        )  # fmt: skip
        end, _ = lab.veth(f"q{i}", ns, mac=mac)
        nss.append(ns)
        ports.append(end + ("" if security else ",port_security=false"))
    return nss, ports


def peer(lab: Lab, i: int) -> str:
    return lab.name(f"pq{i}")


def send(lab: Lab, ns: str, iface: str, frames: list[bytes]) -> None:
    args = [sys.executable, "-m", "vnet.testing.rawio", iface]
    for f in frames:
        args += ["--send", f.hex()]
    lab.exec(ns, *args)


class Listener:
    """rawio in a namespace, printing every frame it hears until it is read."""

    def __init__(self, lab: Lab, ns: str, iface: str, seconds: float) -> None:
        cmd = [sys.executable, "-m", "vnet.testing.rawio", iface, "--listen", str(seconds)]
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        lab.defer(lambda: self.p.poll() is None and self.p.kill())
        assert self.p.stderr is not None
        line = self.p.stderr.readline()
        assert "listening" in line, line + self.p.stderr.read()

    def frames(self) -> list[bytes]:
        out, err = self.p.communicate(timeout=30)
        assert self.p.returncode == 0, err
        return [bytes.fromhex(ln) for ln in out.split()]


def table_counts(target: str) -> dict[int, tuple[int, int]]:
    """table -> (lookup, matched) as `ovs-ofctl dump-tables` reads them from the switch."""
    r = ofctl(target, "dump-tables")
    assert r.returncode == 0, r.stderr
    out: dict[int, tuple[int, int]] = {}
    for m in re.finditer(r"table (\d+):.*?lookup=(\d+), matched=(\d+)", r.stdout, re.S):
        out[int(m[1])] = (int(m[2]), int(m[3]))
    assert out, r.stdout
    return out


def start(lab: Lab, tmp_path: Path, security: bool = False) -> tuple[SwitchRig, str, list[str]]:
    nss, ports = quiet_hosts(lab, security)
    sw = SwitchRig(lab, tmp_path)
    port = free_port()
    sw.start(ports, "--listen", f"ptcp:{port}:127.0.0.1", "--fail-mode", "secure")
    return sw, f"tcp:127.0.0.1:{port}", nss


def test_dump_tables_counts_exactly_what_was_sent(lab: Lab, tmp_path: Path) -> None:
    sw, target, nss = start(lab, tmp_path)
    for flow in ("table=0,in_port=1,udp,actions=goto_table:1", "table=1,udp,tp_dst=7,actions=2"):
        r = ofctl(target, "add-flow", flow)
        assert r.returncode == 0, r.stderr
    base = Ether(src=A, dst=B) / IP(src="10.91.0.1", dst="10.91.0.2")
    hit = bytes(base / UDP(sport=1000, dport=7) / (b"x" * 20))
    miss1 = bytes(base / UDP(sport=1000, dport=8) / (b"x" * 20))  # table 1 misses
    miss0 = bytes(base / TCP(sport=1000, dport=7))  # table 0 misses
    got = Listener(lab, nss[1], peer(lab, 1), 3.0)
    frames = [hit] * 20 + [miss1] * 7 + [miss0] * 5 + [hit] * 10
    send(lab, nss[0], peer(lab, 0), frames)
    arrived = got.frames()
    assert arrived.count(hit) == 30, sw.log()
    counts = table_counts(target)
    assert counts[0] == (42, 37), counts
    assert counts[1] == (37, 30), counts
    show = sw.ctl("show")
    assert show["cache"]["fast_hits"] > 0  # repeats took the cache: both paths were counted
    assert show["drops"].get("no_match") == 12, show["drops"]


@pytest.mark.parametrize("security", [False, True], ids=["plain", "port-security"])
def test_tagged_frames_of_every_kind_pass_or_are_counted(
    lab: Lab, tmp_path: Path, security: bool
) -> None:
    """Every tagged frame arrives, or its absence is a drop with a reason: with port
    security on, the port locks to the first source MAC and the cases that come
    from another one (as a conformance tester's do) are forged transmits."""
    sw, target, nss = start(lab, tmp_path, security)
    ip4 = IP(src="10.91.0.1", dst="10.91.0.2")
    cases = {
        "dl_vlan=10,dl_vlan_pcp=5": Dot1Q(vlan=10, prio=5) / ip4 / UDP(sport=1, dport=2),
        "dl_vlan=11,ip,nw_dst=10.91.0.22": Dot1Q(vlan=11)
        / IP(src="10.91.0.1", dst="10.91.0.22")
        / TCP(sport=1, dport=2),
        "dl_vlan=12,ipv6,nw_proto=132,sctp_src=5000": Dot1Q(vlan=12)
        / IPv6(src="fd00:91::1", dst="fd00:91::2")
        / SCTP(sport=5000, dport=5001),
        "dl_vlan=13,icmp,icmp_type=8": Dot1Q(vlan=13) / ip4 / ICMP(type=8),
        "dl_vlan=14,dl_vlan_pcp=0,ip": Dot1Q(vlan=14, prio=0) / ip4 / UDP(sport=1, dport=2),
        "dl_vlan=0,dl_vlan_pcp=3,ip": Dot1Q(vlan=0, prio=3) / ip4 / UDP(sport=1, dport=2),
    }
    for flow in cases:
        r = ofctl(target, "add-flow", flow + ",actions=output:2")
        assert r.returncode == 0, (flow, r.stderr)
    n = 8
    sent = [
        bytes(Ether(src=f"02:00:00:00:92:{i:02x}" if i else A, dst=B) / p)
        for i, p in enumerate(cases.values())
    ]
    got = Listener(lab, nss[1], peer(lab, 1), 3.0)
    send(lab, nss[0], peer(lab, 0), [f for f in sent for _ in range(n)])
    arrived = got.frames()
    drops = sw.ctl("show")["drops"]
    for i, (flow, f) in enumerate(zip(cases, sent, strict=True)):
        # a frame padded to the minimum size by the sender arrives as it was sent
        passed = sum(1 for a in arrived if a[: len(f)] == f)
        assert passed == (0 if security and i else n), (flow, drops, sw.log())
    forged = (len(cases) - 1) * n if security else 0
    assert drops.get("forged_transmit", 0) == forged, drops
    assert sum(drops.values()) == forged, drops
