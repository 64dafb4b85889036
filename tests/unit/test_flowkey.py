from __future__ import annotations

import pytest

from vnet.packet import Reason, TunnelInfo, ethernet, extract, ipv4, tcp, udp
from vnet.packet import flowkey as fk
from vnet.packet.geneve import GeneveOption


def _tcp_frame() -> bytes:
    return ethernet.build(
        2, 1, 0x0800, ipv4.build(10, 20, 6, tcp.build(1, 2, b"x", ip_src=10, ip_dst=20))
    )


def test_key_is_fixed_length_and_hashable() -> None:
    k = extract(_tcp_frame(), 7)
    assert len(k) == fk.KEY_LEN == len(fk.FIELDS)
    assert hash(k) == hash(extract(_tcp_frame(), 7))
    assert fk.describe(k)["in_port"] == 7


@pytest.mark.parametrize(
    ("cut", "reason", "l2_known"),
    [
        (5, Reason.TRUNCATED_ETH, False),
        (20, Reason.TRUNCATED_IPV4, True),
        (40, Reason.BAD_IPV4_LENGTH, True),
    ],
)
def test_truncated_frames_stop_at_last_layer(cut: int, reason: Reason, l2_known: bool) -> None:
    k = extract(_tcp_frame()[:cut])
    assert k[fk.PARSE_ERROR] == reason
    assert (k[fk.ETH_TYPE] == 0x0800) is l2_known
    assert k[fk.IPV4_SRC] == 0


def test_lying_lengths() -> None:
    f = bytearray(_tcp_frame())
    f[14] = 0x44  # IHL 4 < 5
    assert extract(bytes(f))[fk.PARSE_ERROR] == Reason.BAD_IPV4_IHL
    f = bytearray(_tcp_frame())
    f[14 + 20 + 12] = 0x20  # TCP data offset 2
    k = extract(bytes(f))
    assert k[fk.PARSE_ERROR] == Reason.BAD_TCP_OFFSET and k[fk.IPV4_SRC] == 10 and k[fk.TP_SRC] == 0
    u = ethernet.build(2, 1, 0x0800, ipv4.build(1, 2, 17, b"\x00\x01\x00\x02\x00\x03"))
    assert extract(u)[fk.PARSE_ERROR] == Reason.TRUNCATED_UDP


def test_ethernet_padding_is_ignored() -> None:
    f = (
        ethernet.build(2, 1, 0x0800, ipv4.build(1, 2, 17, udp.build(1, 2, ip_src=1, ip_dst=2)))
        + b"\x00" * 18
    )
    k = extract(f)
    assert k[fk.PARSE_ERROR] == 0 and k[fk.TP_DST] == 2


def test_unknown_ethertype_is_not_an_error() -> None:
    k = extract(ethernet.build(2, 1, 0x88CC, b"lldp"))
    assert k[fk.ETH_TYPE] == 0x88CC and k[fk.PARSE_ERROR] == 0


def test_three_vlan_tags_is_reported() -> None:
    tags = [
        ethernet.VlanTag(0x88A8, 0, 0, 1),
        ethernet.VlanTag(0x8100, 0, 0, 2),
        ethernet.VlanTag(0x8100, 0, 0, 3),
    ]
    k = extract(ethernet.build(2, 1, 0x0800, b"", tags))
    assert k[fk.PARSE_ERROR] == Reason.TOO_MANY_VLANS


def test_tunnel_metadata_and_recirculation_state() -> None:
    t = TunnelInfo(
        tun_id=99, src=1, dst=2, options=(GeneveOption(0x0102, 0x80, b"\x00\x00\x00\x2a"),)
    )
    regs = tuple(range(19))
    k = extract(_tcp_frame(), 1, tunnel=t, ct_regs=regs)
    assert (k[fk.TUN_ID], k[fk.TUN_SRC], k[fk.TUN_DST], k[fk.TUN_METADATA0]) == (99, 1, 2, 42)
    assert k[fk.CT_REGS] == regs and k[fk.TP_DST] == 2


def test_make_key_rejects_unknown_field() -> None:
    with pytest.raises(ValueError, match="nope"):
        fk.make_key(nope=1)
