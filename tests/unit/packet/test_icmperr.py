"""A router's ICMP errors, judged by scapy: time exceeded, unreachable, too big; and silence."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from tests.checksums import bad_checksums
from vnet.packet.icmperr import ICMP4_ROOM, ICMP6_ROOM, SILENCE, error, silence

SENDER, RTR = "02:00:00:00:00:0a", "0a:00:00:00:01:04"
A, GW, FAR = "10.0.1.10", "10.0.1.1", "10.0.2.11"
A6, GW6, FAR6 = "fd00:1::10", "fd00:1::1", "fd00:2::11"


def frame(p: Packet, vlan: int | None = None, dst: str = RTR, src: str = SENDER) -> bytes:
    e = Ether(src=src, dst=dst)
    return bytes(e / Dot1Q(vlan=vlan) / p if vlan is not None else e / p)


def judged(out: bytes | None, cut: bool = False) -> Ether:
    """The error as scapy reads it, every checksum right, from the router to the sender
    (a quote cut short keeps its original transport checksum, which scapy would
    recompute over the cut)."""
    assert out is not None
    bad = bad_checksums(out)
    assert (bad if not cut else [b for b in bad if " in ICMP" not in b]) == []
    p = Ether(out)
    assert (p.src, p.dst) == (RTR, SENDER)
    return p


def test_time_exceeded_v4_quotes_the_datagram_as_it_came() -> None:
    sent = IP(src=A, dst=FAR, ttl=1, id=4242) / UDP(sport=33434, dport=33435) / b"traceroute"
    p = judged(error(frame(sent), 11, 0, RTR, GW))
    ip = p[IP]
    assert (ip.src, ip.dst, ip.proto, ip.ttl, ip.tos) == (GW, A, 1, 64, 0xC0)
    assert (p[ICMP].type, p[ICMP].code) == (11, 0)
    assert bytes(p[ICMP])[4:8] == b"\0" * 4  # unused
    quoted = p[IPerror]
    assert (quoted.src, quoted.dst, quoted.ttl, quoted.id) == (A, FAR, 1, 4242)
    assert p[UDPerror].sport == 33434 and p[UDPerror].dport == 33435
    assert bytes(p[IPerror]) == bytes(sent)  # all of it: well under 576 bytes


def test_net_unreachable_v4_and_a_tcp_quote() -> None:
    sent = IP(src=A, dst="192.168.7.7") / TCP(sport=40000, dport=80, flags="S", seq=9)
    p = judged(error(frame(sent), 3, 0, RTR, GW))
    assert (p[ICMP].type, p[ICMP].code) == (3, 0)
    assert p[TCPerror].seq == 9 and p[IPerror].dst == "192.168.7.7"


def test_the_v4_quote_keeps_the_error_within_576_bytes_and_drops_ethernet_padding() -> None:
    big = IP(src=A, dst=FAR, ttl=1) / UDP(sport=1, dport=2) / (b"x" * 1400)
    p = judged(error(frame(big), 11, 0, RTR, GW), cut=True)
    assert len(p[IP]) == ICMP4_ROOM
    assert bytes(p[IPerror])[:28] == bytes(big)[:28]
    small = IP(src=A, dst=FAR, ttl=1) / UDP(sport=1, dport=2)  # 28 bytes: the frame is padded
    f = frame(small) + b"\0" * 18
    p = judged(error(f, 11, 0, RTR, GW))
    assert bytes(p[ICMP])[8:] == bytes(small)


def test_time_exceeded_v6_and_the_1280_byte_limit() -> None:
    sent = IPv6(src=A6, dst=FAR6, hlim=1) / UDP(sport=33434, dport=33435) / (b"y" * 1500)
    p = judged(error(frame(sent), 3, 0, RTR, GW6), cut=True)
    ip6 = p[IPv6]
    assert (ip6.src, ip6.dst, ip6.nh, ip6.hlim) == (GW6, A6, 58, 64)
    assert ICMPv6TimeExceeded in p and p[ICMPv6TimeExceeded].code == 0
    assert len(p[IPv6]) == ICMP6_ROOM
    assert p[IPerror6].hlim == 1 and p[UDPerror].dport == 33435
    assert bytes(p[IPerror6])[:48] == bytes(sent)[:48]


def test_no_route_v6_and_packet_too_big_carries_the_mtu() -> None:
    sent = IPv6(src=A6, dst="fd00:99::7") / ICMPv6EchoRequest(id=1, seq=2)
    p = judged(error(frame(sent), 1, 0, RTR, GW6))
    assert ICMPv6DestUnreach in p and p[ICMPv6DestUnreach].code == 0
    assert bytes(p[IPerror6]) == bytes(sent)
    p = judged(error(frame(sent), 2, 0, RTR, GW6, rest=1400))
    assert p[ICMPv6PacketTooBig].mtu == 1400
    frag_needed = judged(error(frame(IP(src=A, dst=FAR, flags="DF") / UDP()), 3, 4, RTR, GW, rest=1400))  # fmt: skip
    assert frag_needed[ICMP].nexthopmtu == 1400


def test_vlan_tags_are_kept() -> None:
    p = judged(error(frame(IP(src=A, dst=FAR, ttl=1) / UDP(), vlan=7), 11, 0, RTR, GW))
    assert p[Dot1Q].vlan == 7 and p[IP].dst == A


def test_an_echo_request_is_answered_and_an_echo_reply_too() -> None:
    for t in (8, 0):  # queries, not errors
        sent = IP(src=A, dst=FAR, ttl=1) / ICMP(type=t, id=3, seq=4)
        p = judged(error(frame(sent), 11, 0, RTR, GW))
        assert p[IPerror].src == A


SILENT: list[tuple[str, bytes, str]] = [
    (
        "icmp_error",
        frame(IP(src=A, dst=FAR, ttl=1) / ICMP(type=11) / IP(src=FAR, dst=A) / UDP()),
        GW,
    ),
    ("icmp_error", frame(IP(src=A, dst=FAR, ttl=1) / ICMP(type=3, code=3) / IP() / UDP()), GW),
    ("icmp_error", frame(IP(src=A, dst=FAR, ttl=1) / ICMP(type=5) / IP() / UDP()), GW),  # redirect
    ("icmp_error", frame(IP(src=A, dst=FAR, ttl=1) / ICMP(type=42)), GW),  # unknown: as an error
    (
        "icmp_error",
        frame(IPv6(src=A6, dst=FAR6, hlim=1) / ICMPv6DestUnreach() / IPv6() / UDP()),
        GW6,
    ),
    ("fragment", frame(IP(src=A, dst=FAR, ttl=1, frag=100) / b"later part"), GW),
    (
        "fragment",
        frame(IPv6(src=A6, dst=FAR6, hlim=1) / IPv6ExtHdrFragment(offset=10) / (b"x" * 8)),
        GW6,
    ),
    ("link_multicast", frame(IP(src=A, dst=FAR, ttl=1) / UDP(), dst="ff:ff:ff:ff:ff:ff"), GW),
    ("link_multicast", frame(IP(src=A, dst=FAR, ttl=1) / UDP(), dst="01:00:5e:00:00:01"), GW),
    ("link_multicast", frame(IP(src=A, dst=FAR, ttl=1) / UDP(), src="03:00:00:00:00:01"), GW),
    ("multicast", frame(IP(src=A, dst="224.0.0.9", ttl=1) / UDP()), GW),
    ("multicast", frame(IP(src=A, dst="255.255.255.255", ttl=1) / UDP()), GW),
    ("multicast", frame(IPv6(src=A6, dst="ff02::1", hlim=1) / UDP()), GW6),
    ("source", frame(IP(src="0.0.0.0", dst=FAR, ttl=1) / UDP()), GW),
    ("source", frame(IP(src="127.0.0.1", dst=FAR, ttl=1) / UDP()), GW),
    ("source", frame(IP(src="239.1.1.1", dst=FAR, ttl=1) / UDP()), GW),
    ("source", frame(IP(src="240.0.0.1", dst=FAR, ttl=1) / UDP()), GW),  # class E
    ("source", frame(IP(src="255.255.255.255", dst=FAR, ttl=1) / UDP()), GW),
    ("source", frame(IPv6(src="::", dst=FAR6, hlim=1) / UDP()), GW6),
    ("source", frame(IPv6(src="::1", dst=FAR6, hlim=1) / UDP()), GW6),
    ("source", frame(IPv6(src="ff02::2", dst=FAR6, hlim=1) / UDP()), GW6),
    ("own_address", frame(IP(src=GW, dst=FAR, ttl=1) / UDP()), GW),
    ("family", frame(IP(src=A, dst=FAR, ttl=1) / UDP()), GW6),
    ("not_ip", frame(IP(src=A, dst=FAR, ttl=1) / UDP())[:30], GW),  # cut inside the IP header
    ("not_ip", bytes(Ether(src=SENDER, dst=RTR, type=0x88B5) / (b"x" * 50)), GW),
]


@pytest.mark.parametrize(("why", "data", "addr"), SILENT, ids=[s[0] for s in SILENT])
def test_no_error_is_due(why: str, data: bytes, addr: str) -> None:
    assert why in SILENCE
    assert silence(data, addr) == why
    assert error(data, 11, 0, RTR, addr) is None


def test_the_first_fragment_is_answered() -> None:
    first = IP(src=A, dst=FAR, ttl=1, flags="MF", frag=0) / UDP(sport=5, dport=6) / (b"z" * 64)
    assert silence(frame(first), GW) is None
    assert judged(error(frame(first), 11, 0, RTR, GW))[UDPerror].sport == 5


def test_too_big_may_answer_a_multicast_destination() -> None:
    sent = frame(IPv6(src=A6, dst="ff05::1") / UDP(), dst="33:33:00:00:00:01")
    assert silence(sent, GW6) == "link_multicast"
    p = Ether(error(sent, 2, 0, RTR, GW6, rest=1280, multicast_ok=True) or b"")
    assert p[IPv6].dst == A6 and p[ICMPv6PacketTooBig].mtu == 1280
