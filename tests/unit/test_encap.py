"""Tunnel encapsulation, with scapy as the independent decoder of the outer headers."""

from __future__ import annotations

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

from vnet.packet import DecodeError, Reason, encap
from vnet.packet.addr import ip4_int
from vnet.packet.geneve import GeneveOption

INNER = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())  # fmt: skip
A, B = ip4_int("192.168.50.1"), ip4_int("192.168.50.2")


def checksums_valid(pkt: IP) -> bool:
    """IPv4 header checksum, and the UDP one unless it is 0 (not computed)."""
    q = IP(bytes(pkt))
    udp = UDP in q and q[UDP].chksum != 0
    sent = (q.chksum, q[UDP].chksum if udp else None)
    del q.chksum
    if udp:
        del q[UDP].chksum
    q = IP(bytes(q))
    return (q.chksum, q[UDP].chksum if udp else None) == sent


@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_udp_tunnels_decode_in_scapy(kind: str) -> None:
    opts = (GeneveOption(0x0102, 0x80, (7).to_bytes(4, "big")),) if kind == "geneve" else ()
    wire = encap.encap(kind, INNER, encap.Outer(A, B, 5000, entropy=12345, options=opts), ident=9)
    p = IP(wire)
    assert p.src == "192.168.50.1" and p.dst == "192.168.50.2" and p.flags.DF and p.ttl == 64
    assert 49152 <= p[UDP].sport <= 65535 and p[UDP].dport == encap.udp_port(kind)
    assert p[UDP].chksum != 0 and checksums_valid(p)
    if kind == "vxlan":
        assert p[VXLAN].vni == 5000 and bytes(p[VXLAN].payload) == INNER
    else:
        g = GENEVE(bytes(p[UDP].payload))
        assert g.vni == 5000 and g.proto == 0x6558 and len(g.options) == 1
        assert g.options[0].classid == 0x0102 and g.options[0].type == 0x80
        assert bytes(g.payload) == INNER
    d = encap.decap_udp(kind, B, A, bytes(p[UDP].payload))
    assert (d.key, d.options, d.inner) == (5000, opts, INNER)
    assert len(wire) - len(INNER) + 14 == encap.overhead(kind, sum(4 + len(o.data) for o in opts))


def test_entropy_moves_the_source_port_and_checksum_can_be_off() -> None:
    ports = {IP(encap.encap("vxlan", INNER, encap.Outer(A, B, 1, entropy=e)))[UDP].sport for e in range(50)}  # fmt: skip
    assert len(ports) == 50
    p = IP(encap.encap("vxlan", INNER, encap.Outer(A, B, 1, 0, udp_csum=False)))
    assert p[UDP].chksum == 0 and checksums_valid(p)


def test_nvgre_decodes_in_scapy() -> None:
    wire = encap.encap("nvgre", INNER, encap.Outer(A, B, 0xABCDE, entropy=0x1F7))
    p = IP(wire)
    assert p.proto == 47 and p.flags.DF and checksums_valid(p)
    assert p[GRE].key_present and p[GRE].proto == 0x6558
    assert p[GRE].key == (0xABCDE << 8) | 0xF7
    assert bytes(p[GRE].payload) == INNER
    d = encap.decap_gre(wire)
    assert (d.src, d.dst, d.key, d.inner) == (A, B, 0xABCDE, INNER)
    assert len(wire) - len(INNER) + 14 == encap.overhead("nvgre")


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        ("vxlan", b"\x08\x00", Reason.TRUNCATED_VXLAN),
        ("vxlan", bytes(8) + INNER, Reason.BAD_VXLAN),
        ("geneve", b"\x00\x00\x65\x58\x00\x00\x01\x00" + INNER[:3], None),
        ("geneve", b"\x40\x00\x65\x58\x00\x00\x01\x00", Reason.BAD_GENEVE),
        ("geneve", b"\x00\x00\x08\x00\x00\x00\x01\x00", Reason.BAD_GENEVE),
        ("geneve", b"\x01\x00\x65\x58\x00\x00\x01\x00\x01\x02\x99\x00", Reason.GENEVE_UNKNOWN_CRITICAL),
        ("geneve", b"\x01\x00\x65\x58\x00\x00\x01\x00\x01\x02\x80\x05", Reason.BAD_GENEVE_OPTION),
    ],
)  # fmt: skip
def test_malformed_payloads_name_their_reason(
    kind: str, payload: bytes, reason: Reason | None
) -> None:
    if reason is None:  # a short inner frame is the switch's to judge, not the tunnel's
        assert encap.decap_udp(kind, A, B, payload).inner == INNER[:3]
        return
    with pytest.raises(DecodeError) as e:
        encap.decap_udp(kind, A, B, payload)
    assert e.value.reason == reason


def test_malformed_gre() -> None:
    with pytest.raises(DecodeError):
        encap.decap_gre(b"\x45" + bytes(10))
    plain_gre = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / GRE(proto=0x0800) / IP())
    with pytest.raises(DecodeError) as e:
        encap.decap_gre(plain_gre)
    assert e.value.reason == Reason.BAD_GRE
