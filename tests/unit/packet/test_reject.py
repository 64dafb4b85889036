"""The answers `reject` sends, judged by scapy: TCP reset and ICMP/ICMPv6 unreachable."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPerror6,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.packet import Packet, Raw

from tests.checksums import bad_checksums
from vnet.packet.reject import ICMP4_MAX, ICMP6_MAX, answer, tcp_reset, unreachable

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "fd00::a", "fd00::b"


def frame(p: Packet, vlan: int | None = None) -> bytes:
    e = Ether(src=MAC_A, dst=MAC_B)
    return bytes(e / Dot1Q(vlan=vlan) / p if vlan is not None else e / p)


def judged(out: bytes | None, cut: bool = False) -> Ether:
    """The answer as scapy reads it, every checksum right (a quote cut short keeps
    its original transport checksum, which scapy would recompute over the cut)."""
    assert out is not None
    bad = bad_checksums(out)
    assert (bad if not cut else [b for b in bad if " in ICMP" not in b]) == []
    p = Ether(out)
    assert (p.src, p.dst) == (MAC_B, MAC_A)
    return p


@pytest.mark.parametrize("v6", [False, True])
def test_a_syn_gets_rst_ack_acknowledging_it(v6: bool) -> None:
    ip = IPv6(src=A6, dst=B6) if v6 else IP(src=A, dst=B)
    p = judged(tcp_reset(frame(ip / TCP(sport=40000, dport=5432, flags="S", seq=1000))))
    got = p[IPv6] if v6 else p[IP]
    assert (got.src, got.dst) == ((B6, A6) if v6 else (B, A))
    t = p[TCP]
    assert (t.sport, t.dport) == (5432, 40000)
    assert t.flags == "RA" and t.seq == 0 and t.ack == 1001


def test_segment_with_ack_gets_rst_at_its_ack_number() -> None:
    data = frame(IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="PA", seq=77, ack=5555) / b"xyz")
    t = judged(tcp_reset(data))[TCP]
    assert t.flags == "R" and t.seq == 5555 and t.ack == 0


def test_rst_ack_counts_payload_and_fin_and_wraps() -> None:
    seq = 0xFFFFFFFE
    data = frame(IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="F", seq=seq) / (b"x" * 10))
    t = judged(tcp_reset(data))[TCP]
    assert t.flags == "RA" and t.ack == (seq + 10 + 1) & 0xFFFFFFFF


def test_ethernet_padding_is_not_payload() -> None:
    raw = frame(IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="S", seq=9)) + b"\0" * 6
    assert judged(tcp_reset(raw))[TCP].ack == 10


def test_vlan_tag_is_kept() -> None:
    p = judged(answer(frame(IP(src=A, dst=B) / TCP(flags="S"), vlan=42)))
    assert p[Dot1Q].vlan == 42 and p[TCP].flags == "RA"


def test_no_reset_for_a_reset() -> None:
    assert tcp_reset(frame(IP(src=A, dst=B) / TCP(flags="R", seq=5))) is None
    assert answer(frame(IP(src=A, dst=B) / TCP(flags="RA", seq=5))) is None


@pytest.mark.parametrize(("l4", "code"), [(UDP(sport=5353, dport=53) / b"q", 3), (ICMP(), 1)])
def test_ipv4_unreachable_quotes_the_datagram(l4: Packet, code: int) -> None:
    sent = IP(src=A, dst=B, ttl=33) / l4
    p = judged(answer(frame(sent)))
    assert (p[IP].src, p[IP].dst, p[IP].proto) == (B, A, 1)
    assert (p[ICMP].type, p[ICMP].code) == (3, code)
    quoted = p[IPerror]
    assert (quoted.src, quoted.dst, quoted.ttl) == (A, B, 33)
    assert bytes(quoted) == bytes(sent)
    if code == 3:
        assert p[UDPerror].dport == 53


def test_ipv4_quote_keeps_the_answer_within_576_bytes() -> None:
    big = frame(IP(src=A, dst=B) / UDP(dport=9) / (b"x" * 1400))
    out = answer(big)
    p = judged(out, cut=True)
    assert len(p[IP]) == p[IP].len == ICMP4_MAX
    assert out is not None and out[14 + 28 :] == big[14 : 14 + ICMP4_MAX - 28]


@pytest.mark.parametrize(("l4", "code"), [(UDP(dport=53), 4), (ICMPv6EchoRequest(), 1)])
def test_ipv6_unreachable(l4: Packet, code: int) -> None:
    sent = IPv6(src=A6, dst=B6) / l4
    p = judged(answer(frame(sent)))
    assert (p[IPv6].src, p[IPv6].dst) == (B6, A6)
    assert (p[ICMPv6DestUnreach].type, p[ICMPv6DestUnreach].code) == (1, code)
    assert bytes(p[IPerror6]) == bytes(sent)


def test_ipv6_quote_keeps_the_answer_within_1280_bytes() -> None:
    big = frame(IPv6(src=A6, dst=B6) / UDP(dport=9) / (b"x" * 2000))
    out = answer(big)
    p = judged(out, cut=True)
    assert len(p[IPv6]) == p[IPv6].plen + 40 == ICMP6_MAX
    assert out is not None and out[14 + 48 :] == big[14 : 14 + ICMP6_MAX - 48]


def test_sctp_and_other_protocols_get_host_unreachable() -> None:
    sent = IP(src=A, dst=B) / SCTP(sport=5000, dport=9) / SCTPChunkInit(init_tag=7)
    p = judged(unreachable(frame(sent)))
    assert (p[ICMP].type, p[ICMP].code) == (3, 1)
    assert bytes(p[IPerror]) == bytes(sent)  # its CRC32c as sent
    gre = IP(src=A, dst=B, proto=47) / Raw(b"\0" * 16)
    assert judged(unreachable(frame(gre)))[ICMP].code == 1


def test_the_quote_is_the_datagram_as_it_was_wrong_checksums_and_all() -> None:
    """As Linux's icmp_send and OVN's pinctrl quote it: the bytes received, not
    mended -- the sender matches its error by what it sent."""
    for sent in (
        IP(src=A, dst=B) / UDP(sport=7, dport=9, chksum=0xBAD) / b"data",
        IP(src=A, dst=B) / SCTP(sport=5000, dport=9, chksum=0xBAD) / SCTPChunkInit(),
    ):
        out = unreachable(frame(sent))
        assert out is not None and out[14 + 28 :] == bytes(sent)
        assert [b for b in bad_checksums(out) if " in ICMP" not in b] == []
        assert any(" in ICMP" in b for b in bad_checksums(out))  # the quote's, left as sent


@pytest.mark.parametrize(
    "sent",
    [
        IP(src=A, dst=B) / ICMP(type=3, code=3) / IPerror(src=B, dst=A) / UDPerror(),
        IPv6(src=A6, dst=B6) / ICMPv6DestUnreach() / IPerror6(src=B6, dst=A6),
        IP(src=A, dst=B, frag=10) / Raw(b"x" * 16),  # a later fragment
        IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(offset=5, nh=17) / Raw(b"x" * 16),
        IP(src=A, dst="224.0.0.5") / UDP(dport=9),
        IP(src=A, dst="255.255.255.255") / UDP(dport=67),
        IP(src="0.0.0.0", dst=B) / UDP(dport=67),
        IPv6(src=A6, dst="ff02::1") / UDP(dport=9),
        IPv6(src="::", dst=B6) / UDP(dport=9),
    ],
    ids=[
        "icmp-error",
        "icmp6-error",
        "v4-frag",
        "v6-frag",
        "mcast",
        "bcast",
        "unspec",
        "mcast6",
        "unspec6",
    ],
)
def test_no_answer_due(sent: Packet) -> None:
    assert answer(frame(sent)) is None


def test_echo_reply_is_a_query_and_is_answered() -> None:
    p = judged(answer(frame(IPv6(src=A6, dst=B6) / ICMPv6EchoReply())))
    assert p[ICMPv6DestUnreach].code == 1


def test_broadcast_frame_and_garbage_get_nothing() -> None:
    bcast = bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / IP(src=A, dst=B) / UDP())
    assert answer(bcast) is None
    for junk in (b"", b"\xff" * 13, frame(IP(src=A, dst=B) / TCP())[:40]):
        assert answer(junk) is None
