"""SCTP port rewrites and neighbour discovery options, with scapy as the judge.

Frames are built the way other stacks build them (scapy here, os-ken's packet
library where a conformance suite uses it), with and without an 802.1Q tag.
"""

from __future__ import annotations

import pytest
from os_ken.lib.packet import ethernet, icmpv6, ipv6, packet, vlan
from scapy.layers.inet import IP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6NDOptUnknown,
    IPv6,
)
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import Packet

from vnet.packet import extract
from vnet.packet import flowkey as fk
from vnet.pipeline import Pipeline, apply, parse_flow


def run(flow_text: str, frame: bytes) -> list[bytes]:
    p = Pipeline()
    p.add_flows([parse_flow(flow_text).flow])
    key = extract(frame, 1)
    return [b for op, b in apply(frame, key, p.translate(key).odp) if op[0] == "output"]


def tagged(pkt: Packet, vid: int | None) -> Packet:
    if vid is None:
        return pkt
    return Ether(src=pkt.src, dst=pkt.dst) / Dot1Q(vlan=vid, prio=3) / pkt.payload


def sctp_valid(frame: bytes) -> bool:
    q = Ether(frame)
    sent = q[SCTP].chksum
    del q[SCTP].chksum
    return bool(Ether(bytes(q))[SCTP].chksum == sent)


def sctp_packet(v6: bool, vid: int | None) -> Packet:
    ip = IPv6(src="10::10", dst="20::20") if v6 else IP(src="192.168.10.10", dst="192.168.20.20")
    payload = SCTPChunkData(data=b"0123456789abcdefghijklmnopqrstuvwxyz")
    pkt = (
        Ether(src="12:11:11:11:11:11", dst="22:22:22:22:22:22")
        / ip
        / SCTP(sport=11111, dport=2222)
        / payload
    )
    return tagged(pkt, vid)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("vid", [None, 100], ids=["untagged", "vlan"])
@pytest.mark.parametrize("field", ["sctp_src", "sctp_dst"])
def test_sctp_port_rewrite_recomputes_the_crc32c(v6: bool, vid: int | None, field: str) -> None:
    frame = bytes(sctp_packet(v6, vid))
    assert sctp_valid(frame)
    proto = "sctp6" if v6 else "sctp"
    (out,) = run(f"{proto},actions=set_field:12345->{field},output:2", frame)
    s = Ether(out)[SCTP]
    assert (s.sport, s.dport) == ((12345, 2222) if field == "sctp_src" else (11111, 12345))
    assert sctp_valid(out)
    assert bytes(Ether(out)[SCTPChunkData].data) == b"0123456789abcdefghijklmnopqrstuvwxyz"


def test_sctp_checksum_ignores_ethernet_padding_and_keeps_a_bad_one_bad() -> None:
    good = bytes(sctp_packet(False, None))
    padded = good + b"\xee" * 16  # trailing bytes past the IP packet are no part of it
    (out,) = run("sctp,actions=set_field:7->sctp_dst,output:2", padded)
    assert out[len(good) :] == b"\xee" * 16
    assert sctp_valid(out[: len(good)])
    broken = bytearray(good)
    broken[14 + 20 + 8] ^= 0xFF  # a checksum that was wrong on arrival
    (out,) = run("sctp,actions=set_field:7->sctp_dst,output:2", bytes(broken))
    assert not sctp_valid(out)


def test_a_later_fragment_has_no_ports_to_rewrite() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=6, frag=100) / (b"\x01\x02" * 20)
    frame = bytes(pkt)
    (out,) = run("tcp,actions=set_field:9->tcp_dst,output:2", frame)
    assert out == frame


# -- neighbour discovery options (RFC 4861 §4.3, §4.4, §4.6.1) ---------------------------

NONCE = ICMPv6NDOptUnknown(type=14, len=1, data=b"abcdef")  # RFC 3971 nonce, before the address


def ns(options: list[Packet]) -> Packet:
    pkt = (
        Ether(src="12:11:11:11:11:11", dst="22:22:22:22:22:22")
        / IPv6(src="10::10", dst="20::20")
        / ICMPv6ND_NS(tgt="20::20")
    )
    for o in options:
        pkt = pkt / o
    return pkt


def na(options: list[Packet]) -> Packet:
    pkt = (
        Ether(src="12:11:11:11:11:11", dst="22:22:22:22:22:22")
        / IPv6(src="20::20", dst="10::10")
        / ICMPv6ND_NA(tgt="20::20", R=0, S=1, O=1)
    )
    for o in options:
        pkt = pkt / o
    return pkt


def icmpv6_valid(frame: bytes, layer: type[Packet]) -> bool:
    q = Ether(frame)
    sent = q[layer].cksum
    del q[layer].cksum
    return bool(Ether(bytes(q))[layer].cksum == sent)


SLL = "22:22:22:22:22:22"
CASES = {
    "ns-sll": (ns([ICMPv6NDOptSrcLLAddr(lladdr=SLL)]), 135, "nd_sll"),
    "ns-nonce-sll": (ns([NONCE, ICMPv6NDOptSrcLLAddr(lladdr=SLL)]), 135, "nd_sll"),
    "na-tll": (na([ICMPv6NDOptDstLLAddr(lladdr=SLL)]), 136, "nd_tll"),
    "na-mtu-tll": (na([ICMPv6NDOptMTU(), ICMPv6NDOptDstLLAddr(lladdr=SLL)]), 136, "nd_tll"),
}


@pytest.mark.parametrize("vid", [None, 100], ids=["untagged", "vlan"])
@pytest.mark.parametrize("case", list(CASES))
def test_nd_link_layer_options_match_and_rewrite(case: str, vid: int | None) -> None:
    pkt, type_, field = CASES[case]
    frame = bytes(tagged(pkt, vid))
    key = extract(frame, 1)
    assert key[fk.PARSE_ERROR] == 0
    assert key[fk.ND_SLL if field == "nd_sll" else fk.ND_TLL] == 0x222222222222
    flow = f"icmp6,icmpv6_type={type_},{field}={SLL},actions=set_field:aa:aa:aa:aa:aa:aa->{field},output:2"
    (out,) = run(flow, frame)
    opt = ICMPv6NDOptSrcLLAddr if field == "nd_sll" else ICMPv6NDOptDstLLAddr
    assert Ether(out)[opt].lladdr == "aa:aa:aa:aa:aa:aa"
    assert icmpv6_valid(out, ICMPv6ND_NS if type_ == 135 else ICMPv6ND_NA)
    # every other byte is as it was
    diff = [i for i in range(len(frame)) if frame[i] != out[i]]
    assert len(diff) <= 6 + 2 and len(out) == len(frame)
    # a different address in the option: no match
    assert run(flow.replace(SLL, "22:22:22:22:22:23", 1), frame) == []


@pytest.mark.parametrize("vid", [None, 100], ids=["untagged", "vlan"])
def test_nd_options_as_os_ken_builds_them(vid: int | None) -> None:
    """The frames of the OpenFlow 1.3 conformance suite's ND cases (os-ken's packet library)."""
    for type_, opt_cls, field in (
        (135, icmpv6.nd_option_sla, "nd_sll"),
        (136, icmpv6.nd_option_tla, "nd_tll"),
    ):
        p = packet.Packet()
        p.add_protocol(
            ethernet.ethernet(
                dst="22:22:22:22:22:22",
                src="12:11:11:11:11:11",
                ethertype=0x8100 if vid else 0x86DD,
            )
        )
        if vid:
            p.add_protocol(vlan.vlan(pcp=3, cfi=0, vid=vid, ethertype=0x86DD))
        p.add_protocol(ipv6.ipv6(dst="20::20", src="10::10", nxt=58, hop_limit=64))
        body = icmpv6.nd_neighbor(option=opt_cls(hw_src=SLL), dst="20::20")
        p.add_protocol(icmpv6.icmpv6(type_=type_, code=0, data=body))
        p.serialize()
        frame = bytes(p.data)
        flow = f"icmp6,icmpv6_type={type_},{field}={SLL},actions=output:2"
        assert run(flow, frame) == [frame]
