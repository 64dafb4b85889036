"""tshark as a judge: it reads what vnet writes and dissects vnet's tunnel frames."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vnet.packet import ethernet, geneve, gre, ipv4, tcp, udp, vxlan
from vnet.packet.geneve import GeneveOption
from vnet.packet.pcap import read_frames, write_pcap

pytestmark = pytest.mark.integration


def tshark(*args: str) -> str:
    path = shutil.which("tshark")
    assert path, "tshark missing: `make test` installs it"
    r = subprocess.run([path, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def inner() -> bytes:
    seg = tcp.build(1234, 80, b"hi", ip_src=0x0A000001, ip_dst=0x0A000002)
    return ethernet.build(
        0x020000000002, 0x020000000001, 0x0800, ipv4.build(0x0A000001, 0x0A000002, 6, seg)
    )


def outer(proto: int, payload: bytes) -> bytes:
    return ethernet.build(
        0x020000000010,
        0x020000000011,
        0x0800,
        ipv4.build(0xC0A80001, 0xC0A80002, proto, payload, df=True),
    )


def test_tshark_dissects_vnet_tunnels(tmp_path: Path) -> None:
    frames = [
        outer(
            17,
            udp.build(
                49152, 4789, vxlan.build(5001, inner()), ip_src=0xC0A80001, ip_dst=0xC0A80002
            ),
        ),
        outer(
            17,
            udp.build(
                49153,
                6081,
                geneve.build(5002, inner(), [GeneveOption(0x0102, 0x80, b"\x00\x00\x00\x07")]),
                ip_src=0xC0A80001,
                ip_dst=0xC0A80002,
            ),
        ),
        outer(47, gre.build_nvgre(5003, inner(), flow_id=9)),
    ]
    cap = tmp_path / "tunnels.pcap"
    write_pcap(cap, frames)
    fields = [
        "vxlan.vni",
        "geneve.vni",
        "geneve.option.class",
        "gre.key",
        "ip.checksum.status",
        "udp.checksum.status",
        "tcp.dstport",
        "tcp.checksum.status",
    ]
    args = [
        "-r",
        str(cap),
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
    ]
    out = tshark(
        *args,
        "-T",
        "fields",
        *[a for f in fields for a in ("-e", f)],
        "-E",
        "separator=|",
        "-E",
        "aggregator=,",
    )
    rows = [line.split("|") for line in out.strip().splitlines()]
    assert len(rows) == 3
    vx, gv, nv = rows
    assert int(vx[0], 0) == 5001 and vx[6] == "80"
    assert int(gv[1], 0) == 5002 and int(gv[2], 0) == 0x0102 and gv[6] == "80"
    assert int(nv[3], 0) == (5003 << 8) | 9 and nv[6] == "80"
    for row in rows:
        # Wireshark's checksum status: 0 bad, 1 good, 2 unverified.  Every IP header
        # (outer and inner), UDP datagram and TCP segment must be good.
        assert set(row[4].split(",")) == {"1"}, row
        assert set(row[7].split(",")) == {"1"}, row
        if row[5]:
            assert set(row[5].split(",")) == {"1"}, row


def test_pcapng_written_by_tshark_reads_back(tmp_path: Path) -> None:
    frames = [inner(), outer(47, gre.build_nvgre(7, inner()))]
    cap = tmp_path / "a.pcap"
    write_pcap(cap, frames)
    ng = tmp_path / "a.pcapng"
    tshark("-r", str(cap), "-F", "pcapng", "-w", str(ng))
    assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert list(read_frames(ng)) == frames
