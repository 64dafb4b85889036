"""scapy as an independent oracle: it builds, vnet decodes; vnet builds, scapy dissects."""

from __future__ import annotations

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from tests.conftest import IP6_A, IP6_B, IP_A, IP_B, MAC_A, MAC_B
from vnet.packet import (
    arp,
    decode,
    ethernet,
    extract,
    geneve,
    gre,
    icmp,
    icmpv6,
    ipv4,
    ipv6,
    tcp,
    udp,
    vxlan,
)
from vnet.packet import flowkey as fk
from vnet.packet.addr import ip4_int, ip6_int, mac_int
from vnet.packet.geneve import GeneveOption


def raw(p: Packet) -> bytes:
    return bytes(p)


def inner_tcp() -> Packet:
    return (
        Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / TCP(sport=1234, dport=80, flags="S")
    )


# -- scapy builds, vnet decodes ------------------------------------------------------------


def test_tcp_ipv4_fields_and_checksums() -> None:
    p = (
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src=IP_A, dst=IP_B, ttl=17, tos=0xB9, id=7, flags="DF")
        / TCP(sport=1234, dport=443, flags="SA", seq=5, ack=9)
        / b"payload"
    )
    d = decode(raw(p))
    assert d.error is None
    e, ip, t = d.layer("ethernet"), d.layer("ipv4"), d.layer("tcp")
    assert (e["src"], e["dst"], e["type"]) == (MAC_A, MAC_B, "0x0800")
    assert (ip["src"], ip["dst"], ip["ttl"], ip["dscp"], ip["ecn"], ip["id"], ip["df"]) == (
        IP_A,
        IP_B,
        17,
        0xB9 >> 2,
        1,
        7,
        True,
    )
    assert ip["checksum_ok"] and t["checksum_ok"]
    assert (t["src_port"], t["dst_port"], t["seq"], t["ack"], set(t["flags"])) == (
        1234,
        443,
        5,
        9,
        {"syn", "ack"},
    )
    k = extract(raw(p), 3)
    assert (k[fk.IN_PORT], k[fk.ETH_SRC], k[fk.ETH_DST]) == (3, mac_int(MAC_A), mac_int(MAC_B))
    assert (k[fk.IPV4_SRC], k[fk.IPV4_DST], k[fk.IP_PROTO], k[fk.IP_TTL]) == (
        ip4_int(IP_A),
        ip4_int(IP_B),
        6,
        17,
    )
    assert (k[fk.TP_SRC], k[fk.TP_DST], k[fk.TCP_FLAGS], k[fk.IP_DSCP], k[fk.IP_ECN]) == (
        1234,
        443,
        0x12,
        0xB9 >> 2,
        1,
    )
    assert (k[fk.L3_OFS], k[fk.L4_OFS], k[fk.L7_OFS], k[fk.PARSE_ERROR]) == (14, 34, 54, 0)


def test_ipv4_options_and_fragments() -> None:
    p = (
        Ether()
        / IP(src=IP_A, dst=IP_B, options=b"\x94\x04\x00\x00", flags="MF", frag=0)
        / UDP(sport=1, dport=2)
    )
    k = extract(raw(p))
    assert k[fk.L4_OFS] == 14 + 24 and k[fk.IP_FRAG] == fk.FRAG_ANY and k[fk.TP_DST] == 2
    d = decode(raw(p))
    assert d.layer("ipv4")["options"] == "94040000" and d.layer("ipv4")["checksum_ok"]
    later = Ether() / IP(src=IP_A, dst=IP_B, frag=10, proto=17) / (b"\x00" * 16)
    k = extract(raw(later))
    assert k[fk.IP_FRAG] == fk.FRAG_ANY | fk.FRAG_LATER and k[fk.TP_DST] == 0


def test_udp_and_icmp() -> None:
    k = extract(raw(Ether() / IP(src=IP_A, dst=IP_B) / UDP(sport=53, dport=5353) / b"x"))
    assert (k[fk.IP_PROTO], k[fk.TP_SRC], k[fk.TP_DST]) == (17, 53, 5353)
    p = Ether() / IP(src=IP_A, dst=IP_B) / ICMP(type=8, code=0, id=0x42, seq=3) / b"ping"
    d = decode(raw(p))
    assert (d.layer("icmp")["type"], d.layer("icmp")["id"], d.layer("icmp")["seq"]) == (8, 0x42, 3)
    assert d.layer("icmp")["checksum_ok"]
    k = extract(raw(p))
    assert (k[fk.ICMP_TYPE], k[fk.ICMP_CODE]) == (8, 0)


def test_vlan_and_qinq() -> None:
    p = Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=10, prio=5) / IP(src=IP_A, dst=IP_B) / UDP(dport=7)
    k = extract(raw(p))
    assert (k[fk.VLAN_VID], k[fk.VLAN_PCP], k[fk.ETH_TYPE], k[fk.L3_OFS]) == (
        0x1000 | 10,
        5,
        0x0800,
        18,
    )
    q = (
        Ether(src=MAC_A, dst=MAC_B, type=0x88A8)
        / Dot1AD(vlan=100, prio=1)
        / Dot1Q(vlan=20, prio=2)
        / IP(src=IP_A, dst=IP_B)
        / TCP()
    )
    k = extract(raw(q))
    assert (k[fk.VLAN_VID], k[fk.VLAN_PCP], k[fk.CVLAN_VID], k[fk.CVLAN_PCP]) == (
        0x1064,
        1,
        0x1014,
        2,
    )
    assert (k[fk.ETH_TYPE], k[fk.L3_OFS], k[fk.IP_PROTO]) == (0x0800, 22, 6)
    d = decode(raw(q))
    assert [x["layer"] for x in d.layers] == ["ethernet", "802.1ad", "802.1q", "ipv4", "tcp"]
    assert (d.layer("802.1ad")["vid"], d.layer("802.1q")["vid"]) == (100, 20)


def test_arp() -> None:
    p = Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC_A, psrc=IP_A, pdst=IP_B)
    k = extract(raw(p))
    assert (k[fk.ARP_OP], k[fk.ARP_SPA], k[fk.ARP_TPA], k[fk.ARP_SHA]) == (
        1,
        ip4_int(IP_A),
        ip4_int(IP_B),
        mac_int(MAC_A),
    )
    a = decode(raw(p)).layer("arp")
    assert (a["op"], a["spa"], a["tpa"], a["sha"]) == (1, IP_A, IP_B, MAC_A)


def test_ipv6_extension_walk() -> None:
    p = (
        Ether()
        / IPv6(src=IP6_A, dst=IP6_B, tc=0x28, fl=0x12345, hlim=9)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=[IP6_B])
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=1, id=77)
        / TCP(sport=1, dport=22)
    )
    k = extract(raw(p))
    assert (k[fk.IPV6_SRC], k[fk.IPV6_DST], k[fk.IPV6_LABEL], k[fk.IP_TTL]) == (
        ip6_int(IP6_A),
        ip6_int(IP6_B),
        0x12345,
        9,
    )
    assert (k[fk.IP_PROTO], k[fk.TP_DST], k[fk.IP_DSCP], k[fk.IP_FRAG]) == (
        6,
        22,
        0x28 >> 2,
        fk.FRAG_ANY,
    )
    d = decode(raw(p))
    assert [x["type"] for x in d.layer("ipv6")["extensions"]] == [0, 43, 60, 44]
    assert d.layer("ipv6")["fragment"] == {"offset": 0, "more": True, "id": 77}
    assert d.layer("tcp")["dst_port"] == 22


@pytest.mark.parametrize(
    ("pkt", "typ", "target", "sll", "tll"),
    [
        (ICMPv6ND_NS(tgt=IP6_B) / ICMPv6NDOptSrcLLAddr(lladdr=MAC_A), 135, IP6_B, MAC_A, None),
        (
            ICMPv6ND_NA(tgt=IP6_A, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=MAC_B),
            136,
            IP6_A,
            None,
            MAC_B,
        ),
        (ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=MAC_A), 133, None, MAC_A, None),
        (ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr=MAC_A), 134, None, MAC_A, None),
    ],
)
def test_neighbor_discovery(
    pkt: Packet, typ: int, target: str | None, sll: str | None, tll: str | None
) -> None:
    p = Ether() / IPv6(src=IP6_A, dst="ff02::1", hlim=255) / pkt
    d = decode(raw(p))
    layer = d.layer("icmpv6")
    assert layer["type"] == typ and layer["checksum_ok"]
    assert (
        layer["nd"]["target"] == target and layer["nd"]["sll"] == sll and layer["nd"]["tll"] == tll
    )
    k = extract(raw(p))
    assert k[fk.ICMP_TYPE] == typ and k[fk.PARSE_ERROR] == 0
    if typ in (135, 136):
        assert k[fk.ND_TARGET] == ip6_int(target or "::")
        assert k[fk.ND_SLL] == (mac_int(sll) if sll else 0) and k[fk.ND_TLL] == (
            mac_int(tll) if tll else 0
        )


def test_vxlan() -> None:
    p = (
        Ether()
        / IP(src=IP_A, dst=IP_B)
        / UDP(sport=49152, dport=4789)
        / VXLAN(vni=0xABCDE, flags=0x08)
        / inner_tcp()
    )
    d = decode(raw(p))
    assert d.layer("vxlan")["vni"] == 0xABCDE
    assert d.layer("ethernet", 1)["src"] == MAC_A and d.layer("tcp")["dst_port"] == 80
    h, off = vxlan.parse(raw(p), 42)
    assert h.vni == 0xABCDE and h.vni_valid and off == 50


def test_geneve_with_options() -> None:
    opt = bytes.fromhex("0102800100000007")  # class 0x0102 type 0x80 len 1 word
    p = (
        Ether()
        / IP(src=IP_A, dst=IP_B)
        / UDP(sport=5000, dport=6081)
        / GENEVE(vni=77, proto=0x6558, optionlen=2, options=opt)
        / inner_tcp()
    )
    d = decode(raw(p))
    g = d.layer("geneve")
    assert g["vni"] == 77 and g["options"] == [
        {"class": "0x0102", "type": "0x80", "data": "00000007"}
    ]
    assert d.layer("tcp")["dst_port"] == 80
    h, _ = geneve.parse(raw(p), 42)
    assert geneve.options_to_metadata(h.options)[0] == 7


def test_nvgre() -> None:
    p = (
        Ether()
        / IP(src=IP_A, dst=IP_B)
        / GRE(key_present=1, key=(0x123456 << 8) | 0x9A, proto=0x6558)
        / inner_tcp()
    )
    g = decode(raw(p)).layer("gre")
    assert g["nvgre"] == {"vsid": 0x123456, "flow_id": 0x9A} and g["protocol"] == "0x6558"


# -- vnet builds, scapy dissects -------------------------------------------------------------


def _vnet_tcp(addrs: dict[str, int], payload: bytes = b"hello") -> bytes:
    seg = tcp.build(
        1234,
        80,
        payload,
        flags=tcp.SYN | tcp.ACK,
        seq=10,
        ack=20,
        ip_src=addrs["ip_a"],
        ip_dst=addrs["ip_b"],
    )
    return ethernet.build(
        addrs["mac_b"],
        addrs["mac_a"],
        0x0800,
        ipv4.build(addrs["ip_a"], addrs["ip_b"], 6, seg, ttl=33, df=True),
    )


def _checksums_valid(p: Packet) -> None:
    """scapy recomputes checksums when fields are deleted: compare with what vnet wrote."""
    for layer in (IP, TCP, UDP, ICMP):
        if layer in p:
            sent = p[layer].chksum
            q = p.__class__(bytes(p))
            del q[layer].chksum
            assert q.__class__(bytes(q))[layer].chksum == sent, f"{layer.__name__} checksum"


def test_vnet_tcp_in_scapy(addrs: dict[str, int]) -> None:
    p = Ether(_vnet_tcp(addrs))
    assert (p.src, p.dst, p[IP].src, p[IP].dst, p[IP].ttl) == (MAC_A, MAC_B, IP_A, IP_B, 33)
    assert p[IP].flags == "DF" and (p[TCP].sport, p[TCP].dport, str(p[TCP].flags)) == (
        1234,
        80,
        "SA",
    )
    assert bytes(p[TCP].payload) == b"hello"
    _checksums_valid(p)


def test_vnet_udp_icmp_arp_vlan_in_scapy(addrs: dict[str, int]) -> None:
    u = ethernet.build(
        2,
        1,
        0x0800,
        ipv4.build(
            addrs["ip_a"],
            addrs["ip_b"],
            17,
            udp.build(5, 6, b"abc", ip_src=addrs["ip_a"], ip_dst=addrs["ip_b"]),
        ),
    )
    p = Ether(u)
    assert (p[UDP].sport, p[UDP].dport, p[UDP].len) == (5, 6, 11)
    _checksums_valid(p)
    i = ethernet.build(
        2, 1, 0x0800, ipv4.build(addrs["ip_a"], addrs["ip_b"], 1, icmp.build_echo(9, 4, b"data"))
    )
    p = Ether(i)
    assert (p[ICMP].type, p[ICMP].id, p[ICMP].seq) == (8, 9, 4)
    _checksums_valid(p)
    a = ethernet.build(
        0xFFFFFFFFFFFF,
        addrs["mac_a"],
        0x0806,
        arp.build(1, addrs["mac_a"], addrs["ip_a"], 0, addrs["ip_b"]),
    )
    p = Ether(a)
    assert (p[ARP].op, p[ARP].psrc, p[ARP].pdst, p[ARP].hwsrc) == (1, IP_A, IP_B, MAC_A)
    tags = (ethernet.VlanTag(0x88A8, 3, 0, 100), ethernet.VlanTag(0x8100, 1, 0, 20))
    v = ethernet.build(
        2, 1, 0x0800, ipv4.build(1, 2, 17, udp.build(1, 2, ip_src=1, ip_dst=2)), tags
    )
    p = Ether(v)
    assert (p[Dot1AD].vlan, p[Dot1AD].prio, p[Dot1Q].vlan, p[Dot1Q].prio) == (100, 3, 20, 1)


def test_vnet_ipv6_nd_in_scapy(addrs: dict[str, int]) -> None:
    ns = icmpv6.build_ns(addrs["ip6_a"], addrs["ip6_b"], addrs["ip6_b"], sll=addrs["mac_a"])
    p = Ether(
        ethernet.build(
            2, 1, 0x86DD, ipv6.build(addrs["ip6_a"], addrs["ip6_b"], 58, ns, hop_limit=255)
        )
    )
    assert p[ICMPv6ND_NS].tgt == IP6_B and p[ICMPv6NDOptSrcLLAddr].lladdr == MAC_A
    sent = p[ICMPv6ND_NS].cksum
    del p[ICMPv6ND_NS].cksum
    assert Ether(bytes(p))[ICMPv6ND_NS].cksum == sent
    na = icmpv6.build_na(addrs["ip6_b"], addrs["ip6_a"], addrs["ip6_b"], tll=addrs["mac_b"])
    p = Ether(
        ethernet.build(
            2, 1, 0x86DD, ipv6.build(addrs["ip6_b"], addrs["ip6_a"], 58, na, hop_limit=255)
        )
    )
    assert (
        p[ICMPv6ND_NA].tgt == IP6_B
        and p[ICMPv6ND_NA].S == 1
        and p[ICMPv6NDOptDstLLAddr].lladdr == MAC_B
    )
    echo = icmpv6.build(addrs["ip6_a"], addrs["ip6_b"], 128, 0, b"\x00\x01\x00\x02")
    ext = ipv6.build_ext(58, b"")
    p = Ether(
        ethernet.build(2, 1, 0x86DD, ipv6.build(addrs["ip6_a"], addrs["ip6_b"], 0, ext + echo))
    )
    assert IPv6ExtHdrHopByHop in p and p[ICMPv6EchoRequest].id == 1


def test_vnet_tunnels_in_scapy(addrs: dict[str, int]) -> None:
    inner = _vnet_tcp(addrs)
    vx = udp.build(40000, 4789, vxlan.build(5000, inner), ip_src=1, ip_dst=2)
    p = Ether(ethernet.build(2, 1, 0x0800, ipv4.build(1, 2, 17, vx, df=True)))
    assert p[VXLAN].vni == 5000 and p[VXLAN].flags & 0x08 and p[VXLAN][TCP].dport == 80
    _checksums_valid(p)
    gv = geneve.build(6000, inner, [GeneveOption(0x0102, 0x80, b"\x00\x00\x00\x05")])
    p = Ether(
        ethernet.build(
            2, 1, 0x0800, ipv4.build(1, 2, 17, udp.build(40001, 6081, gv, ip_src=1, ip_dst=2))
        )
    )
    opt = p[GENEVE].options[0]
    assert p[GENEVE].vni == 6000 and p[GENEVE].optionlen == 2
    assert (opt.classid, opt.type, opt.data) == (0x0102, 0x80, b"\x00\x00\x00\x05")
    assert p[GENEVE][TCP].sport == 1234
    nv = gre.build_nvgre(0xABCDEF, inner, flow_id=3)
    p = Ether(ethernet.build(2, 1, 0x0800, ipv4.build(1, 2, 47, nv)))
    assert p[GRE].key_present == 1 and p[GRE].key == (0xABCDEF << 8) | 3 and p[GRE].proto == 0x6558
    assert p[GRE][TCP].dport == 80
