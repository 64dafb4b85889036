"""Tunnel ports on real sockets: two hypervisor namespaces, a vnet switch in each.

h1 and h2 are joined by an underlay veth (192.168.77.0/24); a workload behind
each switch; the flows send everything from the workload into the tunnel with
a VNI and the other VTEP as destination, and deliver what arrives with that
VNI.  tshark, capturing on the underlay, is the judge of the wire format.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.testing.netns import Lab, run

from .switch_rig import SwitchRig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
VTEP1, VTEP2 = "192.168.77.1", "192.168.77.2"
VNI = 5001


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


class Overlay:
    def __init__(self, lab: Lab, tmp: Path, kind: str) -> None:
        self.lab = lab
        self.h = [lab.ns("hv1"), lab.ns("hv2")]
        self.w = [lab.ns("wl1"), lab.ns("wl2")]
        under, _ = lab.veth("un", self.h[1], [f"{VTEP2}/24"])
        run("ip", "link", "set", under, "netns", self.h[0])
        run("ip", "-n", self.h[0], "addr", "add", f"{VTEP1}/24", "dev", under)
        run("ip", "-n", self.h[0], "link", "set", under, "up")
        self.underlay = under
        self.sw = []
        for i, (vtep, remote) in enumerate(((VTEP1, VTEP2), (VTEP2, VTEP1))):
            end, _ = lab.veth(f"w{i}", self.w[i], [f"10.0.0.{i + 1}/24"])
            run("ip", "link", "set", end, "netns", self.h[i])
            run("ip", "-n", self.h[i], "link", "set", end, "up")
            sw = SwitchRig(lab, tmp, f"s{i}")
            sw.start([end, f"tun0,kind={kind},local_ip={vtep}"], "--fail-mode", "secure", ns=self.h[i])  # fmt: skip
            # Geneve also carries the logical ports in its option, as OVN's does
            md = "set_field:0x10002->tun_metadata0," if kind == "geneve" else ""
            sw.vnet("ofctl", "add-flow", sw.name, f"in_port=1,actions=set_field:{VNI}->tun_id,{md}set_field:{remote}->tun_dst,output:2")  # fmt: skip
            sw.vnet("ofctl", "add-flow", sw.name, f"in_port=2,tun_id={VNI},tun_src={remote},actions=output:1")  # fmt: skip
            self.sw.append(sw)

    def ping(self, *args: str, count: int = 3) -> subprocess.CompletedProcess[str]:
        return self.lab.exec(
            self.w[0], "ping", "-c", str(count), "-i", "0.2", "-W", "1", *args, "10.0.0.2",
            check=False,
        )  # fmt: skip


def tshark_fields(pcap: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-o",
            "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=|"]  # fmt: skip
    for f in fields:
        args += ["-e", f]
    out = run(*args, timeout=60).stdout
    return [ln.split("|") for ln in out.splitlines() if ln.strip()]


@pytest.mark.parametrize("kind", ["vxlan", "geneve", "nvgre"])
def test_frames_cross_and_decode_in_tshark(lab: Lab, tmp_path: Path, kind: str) -> None:
    assert shutil.which("tshark"), "tshark missing: `make test` installs it"
    o = Overlay(lab, tmp_path, kind)
    pcap = tmp_path / "underlay.pcap"
    cap = lab.spawn("tshark", "-q", "-i", o.underlay, "-w", str(pcap), ns=o.h[0])
    time.sleep(1.5)  # tshark needs a moment before it captures
    r = o.ping()
    assert r.returncode == 0, r.stdout + r.stderr + o.sw[0].log()[-2000:]
    time.sleep(0.5)
    cap.terminate()
    cap.wait(10)
    key = {"vxlan": "vxlan.vni", "geneve": "geneve.vni", "nvgre": "gre.key"}[kind]
    rows = tshark_fields(pcap, "ip.src", "ip.dst", "ip.flags.df", key, "ip.checksum.status",
                         "udp.checksum.status", "icmp.type", "udp.srcport",
                         "geneve.option.class", "geneve.option.type")  # fmt: skip
    echoes = [r for r in rows if r[6] and r[6].split(",")[-1] in ("0", "8")]
    assert len(echoes) >= 6, rows  # 3 requests and 3 replies, each inside the tunnel
    good = "1"  # tshark's checksum status: 0 bad, 1 good, 2 unverified
    for src, dst, df, k, ipok, udpok, _, sport, ocls, otype in echoes:
        assert {src.split(",")[0], dst.split(",")[0]} == {VTEP1, VTEP2}  # outer header first
        assert df.split(",")[0] in ("1", "True")
        assert (int(k, 0) >> 8 if kind == "nvgre" else int(k, 0)) == VNI
        assert ipok.split(",") == [good, good]  # outer and inner IPv4 headers
        if kind != "nvgre":
            assert udpok == good and int(sport) >= 49152
        if kind == "geneve":
            assert (int(ocls, 0), int(otype, 0)) == (0x0102, 0x80)


def test_oversize_ping_learns_the_overlay_mtu(lab: Lab, tmp_path: Path) -> None:
    o = Overlay(lab, tmp_path, "vxlan")
    assert o.ping(count=1).returncode == 0
    big = o.ping("-M", "do", "-s", "1472", count=2)
    assert big.returncode != 0
    assert "mtu = 1450" in big.stdout or "mtu=1450" in big.stdout, big.stdout + big.stderr
    # the workload's route now knows the path MTU: the largest payload that fits passes
    assert o.ping("-M", "do", "-s", "1422", count=2).returncode == 0
    assert o.ping("-M", "do", "-s", "1423", count=1).returncode != 0
