"""Software GSO: a TCP 64 KB frame cut into segments a tunnel can carry (scapy checks them)."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from vnet.datapath import offload


def gso_hdr(gso_type: int, mss: int, l4: int) -> bytes:
    return struct.pack("<BBHHHH", 1, gso_type, l4 + 20, mss, l4, 16)


def valid(seg: Packet) -> bool:
    q = Ether(bytes(seg))
    sent = (q[TCP].chksum, q[IP].chksum if IP in q else None)
    del q[TCP].chksum
    if IP in q:
        del q[IP].chksum
    q = Ether(bytes(q))
    return (q[TCP].chksum, q[IP].chksum if IP in q else None) == sent


@pytest.mark.parametrize("family", ["v4", "v6", "v4-vlan"])
def test_tcp_gso_frame_becomes_valid_segments(family: str) -> None:
    data = bytes(range(256)) * 20  # 5,120 bytes
    l3: Packet = (
        IP(src="10.0.0.1", dst="10.0.0.2", id=100)
        if family != "v6"
        else IPv6(src="fd00::1", dst="fd00::2")
    )
    eth: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if family == "v4-vlan":
        eth = eth / Dot1Q(vlan=10)
    frame = bytes(eth / l3 / TCP(sport=5000, dport=80, seq=1000, flags="FPAC") / data)
    l4 = len(eth) + (20 if family != "v6" else 40)
    segs = offload.segment(gso_hdr(1 if family != "v6" else 4, 1448, l4), frame)
    assert segs is not None and len(segs) == 4  # 1448 * 3 + 776
    got = b""
    for i, raw in enumerate(segs):
        p = Ether(raw)
        assert valid(p), i
        assert p[TCP].seq == 1000 + i * 1448
        assert bool(p[TCP].flags.F) == bool(p[TCP].flags.P) == (i == 3)
        assert bool(p[TCP].flags.C) == (i == 0)
        if IP in p:
            assert p[IP].id == 100 + i and p[IP].len == len(raw) - len(eth)
        else:
            assert p[IPv6].plen == len(raw) - len(eth) - 40
        got += bytes(p[TCP].payload)
    assert got == data


def test_what_cannot_be_segmented_is_refused() -> None:
    frame = bytes(Ether() / IP() / TCP() / (b"x" * 3000))
    assert (
        offload.segment(struct.pack("<BBHHHH", 1, 4, 54, 1448, 34, 16), frame) is None
    )  # v6 type on v4
    assert offload.segment(struct.pack("<BBHHHH", 1, 5, 42, 1448, 34, 6), frame) is None  # UDP GSO
    assert offload.segment(b"", frame) == [frame]  # nothing to do
