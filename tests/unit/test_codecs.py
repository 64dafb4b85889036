from __future__ import annotations

import pytest

from vnet.packet import (
    DecodeError,
    Reason,
    arp,
    checksum,
    ethernet,
    geneve,
    gre,
    icmpv6,
    ipv4,
    ipv6,
    tcp,
    udp,
    vxlan,
)


def test_checksum_incremental_matches_full() -> None:
    hdr = bytearray(ipv4.build(0x0A000001, 0x0A000002, 6, ttl=64))
    c = int.from_bytes(hdr[10:12], "big")
    old = bytes(hdr[16:20])
    hdr[16:20] = bytes([192, 168, 1, 1])
    c2 = checksum.update_bytes(c, old, bytes(hdr[16:20]))
    hdr[10:12] = c2.to_bytes(2, "big")
    assert ipv4.header_checksum_ok(bytes(hdr))
    assert checksum.update_word(0x1234, 0x5555, 0x5555) == 0x1234


def test_parsers_raise_typed_errors() -> None:
    cases = [
        (lambda: ethernet.parse(b"\x00" * 10), Reason.TRUNCATED_ETH),
        (lambda: ipv4.parse(b"\x45" + b"\x00" * 10, 0), Reason.TRUNCATED_IPV4),
        (lambda: ipv4.parse(b"\x65" + b"\x00" * 19, 0), Reason.BAD_IPV4_VERSION),
        (lambda: ipv6.parse(b"\x60" + b"\x00" * 10, 0), Reason.TRUNCATED_IPV6),
        (lambda: tcp.parse(b"\x00" * 10, 0), Reason.TRUNCATED_TCP),
        (lambda: udp.parse(b"\x00\x01\x00\x02\x00\x04\x00\x00", 0), Reason.BAD_UDP_LENGTH),
        (lambda: arp.parse(b"\x00" * 28, 0), Reason.BAD_ARP),
        (lambda: vxlan.parse(b"\x08", 0), Reason.TRUNCATED_VXLAN),
        (lambda: geneve.parse(b"\x3f" + b"\x00" * 7, 0), Reason.TRUNCATED_GENEVE),
        (lambda: gre.parse(b"\x00\x01\x65\x58", 0), Reason.BAD_GRE_VERSION),
        (lambda: gre.parse(b"\x20\x00\x65\x58", 0), Reason.TRUNCATED_GRE),
    ]
    for fn, reason in cases:
        with pytest.raises(DecodeError) as exc:
            fn()
        assert exc.value.reason == reason, reason


def test_nd_zero_length_option_is_rejected_not_looped() -> None:
    body = b"\x00" * 4 + b"\x00" * 16 + b"\x01\x00" + b"\x00" * 6
    with pytest.raises(DecodeError) as exc:
        icmpv6.parse_nd(body, 0, icmpv6.ND_NS, len(body))
    assert exc.value.reason == Reason.BAD_ND_OPTION


def test_ipv6_extension_chain_is_bounded() -> None:
    ext = b"".join(ipv6.build_ext(60) for _ in range(ipv6.MAX_EXT_HEADERS + 1))
    pkt = ipv6.build(1, 2, 60, ext)
    _, off = ipv6.parse(pkt, 0)
    with pytest.raises(DecodeError) as exc:
        ipv6.walk_extensions(pkt, off, 60, len(pkt))
    assert exc.value.reason == Reason.TOO_MANY_IPV6_EXT


def test_vni_range_is_checked() -> None:
    with pytest.raises(ValueError, match="VNI"):
        vxlan.build(1 << 24)
    with pytest.raises(ValueError, match="VSID"):
        gre.build_nvgre(1 << 24)


def test_push_pop_tag_roundtrip() -> None:
    f = ethernet.build(2, 1, 0x0800, b"payload")
    tagged = ethernet.push_tag(f, 0x8100, 10)
    assert ethernet.parse_tag(tagged, 14, 0x8100)[0].vid == 10
    assert bytes(ethernet.pop_tag(tagged)) == f
