"""The NAT rewrite of a frame's bytes, checked field by field and by scapy's checksums."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    IPerror6,
    IPv6,
)
from scapy.layers.inet6 import (
    TCPerror as TCPerror6,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import Packet

from tests.checksums import bad_checksums
from vnet.packet import flowkey as fk
from vnet.packet.addr import ip4_int, ip6_int
from vnet.packet.checksum import internet_checksum, pseudo_header_v4
from vnet.packet.nat import Rewrite, rewrite, rewrite_key

A, B, X = "10.0.0.1", "10.0.0.2", "192.0.2.7"
A6, B6, X6 = "fd00::1", "fd00::2", "fd00:ffff::7"


def eth(p: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p)


def nat(frame: bytes, rw: Rewrite, partial: bool = False) -> bytes:
    buf = bytearray(frame)
    rewrite(buf, fk.extract(frame, 1), rw, partial)
    return bytes(buf)


@pytest.mark.parametrize(
    "l4",
    [
        TCP(sport=40000, dport=80, flags="S", seq=7) / b"hello",
        UDP(sport=40000, dport=53) / b"query",
        SCTP(sport=40000, dport=80) / SCTPChunkData(data=b"x" * 11),
    ],
    ids=["tcp", "udp", "sctp"],
)
def test_source_address_and_port_v4(l4: Packet) -> None:
    frame = eth(IP(src=A, dst=B) / l4)
    assert bad_checksums(frame) == []
    out = Ether(nat(frame, Rewrite(ip4_int(X), ip4_int(B), 1024, 80 if "TCP" in l4 else 53)))
    assert out[IP].src == X and out[IP].dst == B
    assert out[IP].payload.sport == 1024
    assert bad_checksums(bytes(out)) == []
    assert bytes(out[IP].payload)[-5:] == bytes(l4)[-5:]  # the payload is untouched


def test_destination_v6_tcp() -> None:
    frame = eth(IPv6(src=A6, dst=X6) / TCP(sport=5000, dport=80, flags="S") / b"data")
    out = Ether(nat(frame, Rewrite(ip6_int(A6), ip6_int(B6), 5000, 8080)))
    assert out[IPv6].dst == B6 and out[TCP].dport == 8080 and out[TCP].sport == 5000
    assert bad_checksums(bytes(out)) == []


def test_udp_v4_without_a_checksum_keeps_none() -> None:
    frame = bytearray(eth(IP(src=A, dst=B) / UDP(sport=1, dport=2) / b"abc"))
    frame[14 + 20 + 6 : 14 + 20 + 8] = b"\x00\x00"
    out = Ether(nat(bytes(frame), Rewrite(ip4_int(X), ip4_int(B), 1, 2)))
    assert out[UDP].chksum == 0 and out[IP].src == X
    assert bad_checksums(bytes(out)) == []


@pytest.mark.parametrize("v6", [False, True], ids=["icmp", "icmpv6"])
def test_echo_identifier_plays_the_port(v6: bool) -> None:
    if v6:
        frame = eth(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=7, seq=1, data=b"ping"))
        rw = Rewrite(ip6_int(X6), ip6_int(B6), 4242)
    else:
        frame = eth(IP(src=A, dst=B) / ICMP(type=8, id=7, seq=1) / b"ping")
        rw = Rewrite(ip4_int(X), ip4_int(B), 4242)
    out = Ether(nat(frame, rw))
    echo = out[ICMPv6EchoRequest] if v6 else out[ICMP]
    assert echo.id == 4242 and echo.seq == 1
    assert bad_checksums(bytes(out)) == []


def test_a_tagged_frame_is_rewritten_at_its_offsets() -> None:
    frame = eth(Dot1Q(vlan=5) / IP(src=A, dst=B) / TCP(sport=1, dport=2))
    out = Ether(nat(frame, Rewrite(ip4_int(X), ip4_int(B), 3, 2)))
    assert out[Dot1Q].vlan == 5 and out[IP].src == X and out[TCP].sport == 3
    assert bad_checksums(bytes(out)) == []


def test_a_checksum_left_to_the_device_gets_the_pseudo_header_sum() -> None:
    """NEEDS_CSUM: the field holds the pseudo-header sum, uncomplemented; an address
    change moves it, a port change does not (the device sums the header)."""
    seg = bytes(TCP(sport=40000, dport=80, flags="S"))
    frame = bytearray(eth(IP(src=A, dst=B, proto=6) / seg))

    def pseudo(src: str) -> int:
        return ~internet_checksum(pseudo_header_v4(ip4_int(src), ip4_int(B), 6, len(seg))) & 0xFFFF

    struct.pack_into("!H", frame, 14 + 20 + 16, pseudo(A))
    out = nat(bytes(frame), Rewrite(ip4_int(X), ip4_int(B), 1024, 80), partial=True)
    assert struct.unpack_from("!H", out, 14 + 20 + 16)[0] == pseudo(X)
    assert Ether(out)[TCP].sport == 1024
    assert [b for b in bad_checksums(out) if not b.startswith("TCP.")] == []  # IP's is whole


def quoted_error_v4(inner: Packet) -> bytes:
    return eth(IP(src="198.51.100.1", dst=X) / ICMP(type=3, code=3) / inner)


@pytest.mark.parametrize(
    "inner",
    [
        IPerror(src=X, dst=B) / TCPerror(sport=1024, dport=80, flags="S", seq=9),
        IPerror(src=X, dst=B) / UDPerror(sport=1024, dport=53) / b"q",
    ],
    ids=["tcp", "udp"],
)
def test_an_icmp_error_is_translated_outside_and_inside(inner: Packet) -> None:
    frame = quoted_error_v4(inner)
    assert bad_checksums(frame) == []
    rw = Rewrite(ip4_int("198.51.100.1"), ip4_int(A), 0, 0, (ip4_int(A), ip4_int(B), 40000, 80))
    out = Ether(nat(frame, rw))
    assert out[IP].src == "198.51.100.1" and out[IP].dst == A
    assert out[IPerror].src == A and out[IPerror].dst == B
    assert out[IPerror].payload.sport == 40000 and out[IPerror].payload.dport == 80
    assert bad_checksums(bytes(out)) == []  # outer IP, ICMP, inner IP, inner TCP/UDP


def test_an_icmp_error_quoting_eight_bytes_of_tcp_keeps_its_quote_whole() -> None:
    full = bytes(IP(src=X, dst=B) / TCP(sport=1024, dport=80, flags="S"))
    frame = eth(IP(src="198.51.100.1", dst=X) / ICMP(type=11, code=0) / full[:28])
    rw = Rewrite(ip4_int("198.51.100.1"), ip4_int(A), 0, 0, (ip4_int(A), ip4_int(B), 40000, 80))
    out = Ether(nat(frame, rw))
    assert out[IPerror].src == A and bytes(out[ICMP].payload)[20:22] == (40000).to_bytes(2, "big")
    assert len(bytes(out)) == len(frame)
    assert bad_checksums(bytes(out)) == []


def test_an_icmpv6_error_is_translated_outside_and_inside() -> None:
    inner = IPerror6(src=X6, dst=B6) / TCPerror6(sport=1024, dport=80, flags="S")
    frame = eth(IPv6(src="fd00:9::1", dst=X6) / ICMPv6DestUnreach(code=4) / inner)
    assert bad_checksums(frame) == []
    rw = Rewrite(ip6_int("fd00:9::1"), ip6_int(A6), 0, 0, (ip6_int(A6), ip6_int(B6), 40000, 80))
    out = Ether(nat(frame, rw))
    assert out[IPv6].dst == A6 and out[IPerror6].src == A6 and out[IPerror6].dst == B6
    assert out[IPerror6].payload.sport == 40000
    assert bad_checksums(bytes(out)) == []


def test_the_key_takes_the_same_translation() -> None:
    frame = eth(IP(src=A, dst=B) / TCP(sport=40000, dport=80))
    rw = Rewrite(ip4_int(X), ip4_int(B), 1024, 80)
    key = list(fk.extract(frame, 1))
    rewrite_key(key, rw)
    assert key == list(fk.extract(nat(frame, rw), 1))
    echo = eth(IP(src=A, dst=B) / ICMP(id=5))
    key = list(fk.extract(echo, 1))
    rewrite_key(key, Rewrite(ip4_int(X), ip4_int(B), 9))
    assert key == list(fk.extract(nat(echo, Rewrite(ip4_int(X), ip4_int(B), 9)), 1))


def test_not_ip_is_left_alone() -> None:
    frame = bytes(Ether(type=0x88B5) / (b"\x00" * 46))
    assert nat(frame, Rewrite(1, 2, 3, 4)) == frame
