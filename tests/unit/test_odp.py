"""Rewrites applied to bytes: scapy re-dissects, checksums must still verify."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet

from vnet.packet import extract
from vnet.pipeline import Pipeline, apply, parse_flow


def run(flow_text: str, pkt: Packet, in_port: int = 1) -> list[Packet]:
    p = Pipeline()
    p.add_flows([parse_flow(flow_text).flow])
    frame = bytes(pkt)
    key = extract(frame, in_port)
    return [Ether(b) for op, b in apply(frame, key, p.translate(key).odp) if op[0] == "output"]


def valid(p: Packet) -> bool:
    for layer in (IP, TCP, UDP, ICMP):
        if layer in p:
            q = Ether(bytes(p))
            sent = q[layer].chksum
            del q[layer].chksum
            if Ether(bytes(q))[layer].chksum != sent:
                return False
    return True


def test_nat_like_rewrite_tcp() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", ttl=9) / TCP(sport=1000, dport=80) / b"data"
    (out,) = run(
        "tcp,actions=set_field:192.168.1.1->ip_src,set_field:8080->tcp_dst,dec_ttl,mod_dl_src:02:00:00:00:00:aa,output:2",
        pkt,
    )
    assert (out[IP].src, out[TCP].dport, out[IP].ttl, out.src) == (
        "192.168.1.1",
        8080,
        8,
        "02:00:00:00:00:aa",
    )
    assert valid(out)


def test_udp_and_tos_rewrite() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=53) / b"q"
    (out,) = run(
        "udp,actions=set_field:10.9.9.9->nw_dst,mod_tp_src:7777,mod_nw_tos:184,output:2", pkt
    )
    assert (out[IP].dst, out[UDP].sport, out[IP].tos) == ("10.9.9.9", 7777, 184)
    assert valid(out)


def test_vlan_push_set_pop() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP()
    (out,) = run(
        "actions=push_vlan:0x8100,set_field:4196->vlan_vid,set_field:5->vlan_pcp,set_field:10.1.1.1->ip_dst,output:2",
        pkt,
    )
    assert (out[Dot1Q].vlan, out[Dot1Q].prio, out[IP].dst) == (100, 5, "10.1.1.1")
    assert valid(out)
    tagged = Ether() / Dot1Q(vlan=7) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP()
    (out,) = run("dl_vlan=7,actions=pop_vlan,set_field:10.0.0.3->ip_dst,output:2", tagged)
    assert Dot1Q not in out and out[IP].dst == "10.0.0.3" and valid(out)


def test_arp_and_ipv6_rewrite() -> None:
    pkt = Ether() / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2")
    (out,) = run("arp,actions=set_field:2->arp_op,set_field:10.0.0.2->arp_spa,output:2", pkt)
    assert (out[ARP].op, out[ARP].psrc) == (2, "10.0.0.2")
    v6 = Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=22)
    (out,) = run("tcp6,actions=set_field:2001:db8::99->ipv6_dst,output:2", v6)
    q = Ether(bytes(out))
    sent = q[TCP].chksum
    del q[TCP].chksum
    assert out[IPv6].dst == "2001:db8::99" and Ether(bytes(q))[TCP].chksum == sent
    ns = (
        Ether()
        / IPv6(src="fe80::1", dst="ff02::1:ff00:2")
        / ICMPv6ND_NS(tgt="fe80::2")
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    )
    (out,) = run("icmp6,icmp_type=135,actions=set_field:02:00:00:00:00:99->nd_sll,output:2", ns)
    assert out[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:99"
    q = Ether(bytes(out))
    sent = q[ICMPv6ND_NS].cksum
    del q[ICMPv6ND_NS].cksum
    assert Ether(bytes(q))[ICMPv6ND_NS].cksum == sent


def test_nd_extension_fields_match_and_rewrite() -> None:
    ns = (
        Ether()
        / IPv6(src="fe80::1", dst="ff02::1:ff00:2")
        / ICMPv6ND_NS(tgt="fe80::2", res=7)
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    )
    flow = (
        "icmp6,icmp_type=135,nd_reserved=7,nd_options_type=1,"
        "actions=set_field:0x60000000->nd_reserved,set_field:2->nd_options_type,output:2"
    )
    (out,) = run(flow, ns)
    raw = bytes(out[ICMPv6ND_NS])
    assert raw[4:8] == bytes.fromhex("60000000") and raw[24] == 2  # reserved word, option type
    q = Ether(bytes(out))
    sent = q[ICMPv6ND_NS].cksum
    del q[ICMPv6ND_NS].cksum
    assert Ether(bytes(q))[ICMPv6ND_NS].cksum == sent
    assert not run(flow.replace("nd_reserved=7", "nd_reserved=8"), ns)  # the match is exact
    # no option: nothing to write, the frame keeps its length
    bare = Ether() / IPv6(src="fe80::1", dst="fe80::2") / ICMPv6ND_NS(tgt="fe80::2")
    (out,) = run("icmp6,icmp_type=135,nd_options_type=0,actions=set_field:2->nd_options_type,output:2", bare)  # fmt: skip
    assert bytes(out) == bytes(bare)


def test_meter_can_stop_a_packet() -> None:
    p = Pipeline()
    p.add_flows([parse_flow("actions=meter:1,output:2").flow])
    frame = bytes(Ether() / IP() / UDP())
    key = extract(frame, 1)
    d = p.translate(key)
    assert [op for op, _ in apply(frame, key, d.odp, meter=lambda mid, n: True)] == [("output", 2)]
    assert apply(frame, key, d.odp, meter=lambda mid, n: False) == []
