"""OpenFlow 1.3 conformance through the agent: what a controller's FLOW_MOD gets.

The cases follow the OpenFlow 1.3 specification where it and Open vSwitch
agree: TTL actions need only an IP EtherType, a field an apply-action writes
needs its prerequisites in the match (OFPBAC_MATCH_INCONSISTENT otherwise),
and what vnet does not implement (MPLS, PBB) is an error naming the kind of
refusal, never a silent drop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from vnet.datapath import Switch
from vnet.ofp.agent import Agent
from vnet.ofp.client import OFClient, OFClientError
from vnet.ofp.convert import DP, flow_from_ofp, flow_mod_to_ofp
from vnet.packet import extract
from vnet.pipeline import apply, parse_flow

from .agent_thread import agent_thread, memory_switch


@pytest.fixture
def switch() -> Iterator[tuple[Switch, str]]:
    sw = memory_switch("conf", 2)
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    with agent_thread(agent):
        yield sw, f"tcp:127.0.0.1:{agent.bound_ports()[0]}"


def mod(match: parser.OFPMatch, *actions: Any) -> parser.OFPFlowMod:
    return parser.OFPFlowMod(
        DP,
        match=match,
        priority=10,
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))],
    )


def refused(target: str, msg: Any) -> tuple[int, int]:
    with OFClient(target) as c, pytest.raises(OFClientError) as e:
        c.transact(msg)
    return e.value.type, e.value.code


def forward(sw: Switch, frame: bytes) -> list[bytes]:
    sw.settle()
    key = extract(frame, 1)
    return [b for op, b in apply(frame, key, sw.pipeline.translate(key).odp) if op[0] == "output"]


V4 = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64) / UDP(sport=1, dport=2))
V6 = bytes(Ether() / IPv6(src="10::1", dst="10::2", hlim=64) / UDP(sport=1, dport=2))


@pytest.mark.parametrize(("eth_type", "frame"), [(0x0800, V4), (0x86DD, V6)], ids=["ip", "ipv6"])
def test_set_nw_ttl_needs_only_an_ip_eth_type(
    switch: tuple[Switch, str], eth_type: int, frame: bytes
) -> None:
    sw, target = switch
    with OFClient(target) as c:
        m = mod(
            parser.OFPMatch(eth_type=eth_type),
            parser.OFPActionSetNwTtl(10),
            parser.OFPActionOutput(2),
        )
        c.transact(m)
        (st,) = c.multipart(parser.OFPFlowStatsRequest(DP))
    # read back as the action the controller sent
    (acts,) = [i.actions for i in st.instructions]
    assert [type(a).__name__ for a in acts] == ["OFPActionSetNwTtl", "OFPActionOutput"]
    assert acts[0].nw_ttl == 10
    (out,) = forward(sw, frame)
    got = Ether(out)
    assert (got[IP].ttl if eth_type == 0x0800 else got[IPv6].hlim) == 10
    if eth_type == 0x0800:  # the header checksum follows the TTL
        q = Ether(out)
        del q[IP].chksum
        assert Ether(bytes(q))[IP].chksum == got[IP].chksum


@pytest.mark.parametrize(("eth_type", "frame"), [(0x0800, V4), (0x86DD, V6)], ids=["ip", "ipv6"])
def test_dec_nw_ttl_needs_only_an_ip_eth_type(
    switch: tuple[Switch, str], eth_type: int, frame: bytes
) -> None:
    sw, target = switch
    with OFClient(target) as c:
        c.transact(
            mod(
                parser.OFPMatch(eth_type=eth_type),
                parser.OFPActionDecNwTtl(),
                parser.OFPActionOutput(2),
            )
        )
    (out,) = forward(sw, frame)
    got = Ether(out)
    assert (got[IP].ttl if eth_type == 0x0800 else got[IPv6].hlim) == 63


@pytest.mark.parametrize(
    ("match", "action"),
    [
        # ip_dscp and ip_ecn live in both IP headers: an IP EtherType is all they need
        ({"eth_type": 0x86DD}, parser.OFPActionSetField(ip_dscp=8)),
        ({"eth_type": 0x0800}, parser.OFPActionSetField(ip_ecn=1)),
        ({"eth_type": 0x0800}, parser.OFPActionSetField(ipv4_src="10.9.9.9")),
        ({"eth_type": 0x0800, "ip_proto": 132}, parser.OFPActionSetField(sctp_dst=9)),
        ({"eth_type": 0x86DD, "ip_proto": 58}, parser.OFPActionSetField(icmpv6_type=129)),
        ({"vlan_vid": 0x1064}, parser.OFPActionSetField(vlan_pcp=5)),
        ({}, parser.OFPActionSetField(eth_src="02:00:00:00:00:09")),
    ],
)
def test_set_field_with_its_prerequisites_is_accepted(
    switch: tuple[Switch, str], match: dict[str, int], action: Any
) -> None:
    sw, target = switch
    with OFClient(target) as c:
        c.transact(mod(parser.OFPMatch(**match), action, parser.OFPActionOutput(2)))
    assert len(sw.pipeline.rules()) == 1


@pytest.mark.parametrize(
    ("match", "actions"),
    [
        ({}, [parser.OFPActionSetNwTtl(10)]),
        ({"eth_type": 0x0806}, [parser.OFPActionDecNwTtl()]),
        ({}, [parser.OFPActionSetField(ip_dscp=8)]),
        ({"eth_type": 0x0800}, [parser.OFPActionSetField(tcp_dst=80)]),
        ({"eth_type": 0x86DD}, [parser.OFPActionSetField(ipv4_dst="10.0.0.1")]),
        ({"eth_type": 0x0800, "ip_proto": 1}, [parser.OFPActionSetField(icmpv6_type=129)]),
        (
            {"eth_type": 0x86DD, "ip_proto": 58},
            [parser.OFPActionSetField(ipv6_nd_sll="02:00:00:00:00:01")],
        ),
        ({}, [parser.OFPActionSetField(vlan_vid=0x1005)]),
        # a tag popped is no longer there to write
        ({"vlan_vid": 0x1064}, [parser.OFPActionPopVlan(), parser.OFPActionSetField(vlan_pcp=1)]),
    ],
)
def test_set_field_without_its_prerequisites_is_match_inconsistent(
    switch: tuple[Switch, str], match: dict[str, int], actions: list[Any]
) -> None:
    sw, target = switch
    m = mod(parser.OFPMatch(**match), *actions, parser.OFPActionOutput(2))
    assert refused(target, m) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_MATCH_INCONSISTENT)
    assert sw.pipeline.rules() == []


def test_actions_before_change_what_later_ones_may_write(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    with OFClient(target) as c:
        # push_vlan makes a tag to write into
        c.transact(
            mod(
                parser.OFPMatch(eth_type=0x0800),
                parser.OFPActionPushVlan(0x8100),
                parser.OFPActionSetField(vlan_vid=0x1005),
                parser.OFPActionOutput(2),
            )
        )
        # the neighbour-advertisement responder: the packet is an NA once icmpv6_type is set
        responder = parse_flow(
            "icmp6,icmpv6_type=135,actions=set_field:136->icmpv6_type,"
            "set_field:0x60000000->nd_reserved,set_field:2->nd_options_type,IN_PORT"
        ).flow
        c.transact(flow_mod_to_ofp(responder))
        # write-actions are a set, not a sequence: not checked against the match
        c.transact(
            parser.OFPFlowMod(
                DP,
                priority=5,
                match=parser.OFPMatch(eth_type=0x0800),
                instructions=[
                    parser.OFPInstructionActions(
                        ofp.OFPIT_WRITE_ACTIONS,
                        [parser.OFPActionSetField(tcp_dst=80), parser.OFPActionOutput(2)],
                    )
                ],
            )
        )
    assert len(sw.pipeline.rules()) == 3


# -- what vnet does not support: MPLS and PBB ---------------------------------------------


def test_mpls_and_pbb_are_refused_with_the_openflow_error_for_each(
    switch: tuple[Switch, str],
) -> None:
    sw, target = switch
    out2 = parser.OFPActionOutput(2)
    cases = [
        (
            mod(parser.OFPMatch(eth_type=0x8847, mpls_label=100), out2),
            (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x88E7, pbb_isid=100), out2),
            (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x0800), parser.OFPActionPushMpls(0x8847), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x8847), parser.OFPActionPopMpls(0x0800), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x8847), parser.OFPActionSetMplsTtl(9), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x8847), parser.OFPActionDecMplsTtl(), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(), parser.OFPActionPushPbb(0x88E7), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(), parser.OFPActionPopPbb(), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x8847, mpls_tc=1), out2),
            (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x8847, mpls_bos=1), out2),
            (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD),
        ),
        (
            mod(parser.OFPMatch(), parser.OFPActionCopyTtlOut(), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(), parser.OFPActionCopyTtlIn(), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(), parser.OFPActionSetQueue(1), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
        ),
        (
            mod(parser.OFPMatch(eth_type=0x8847), parser.OFPActionSetField(mpls_label=5), out2),
            (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE),
        ),
    ]
    for msg, want in cases:
        assert refused(target, msg) == want, msg
    assert sw.pipeline.rules() == []


def test_set_nw_ttl_travels_both_ways_through_the_codec() -> None:
    flow = parse_flow("ip,actions=mod_nw_ttl:7,output:2").flow
    msg = flow_mod_to_ofp(flow)
    msg.serialize()
    wire = bytes(msg.buf)
    assert "0017000807000000" in wire.hex()  # OFPAT_SET_NW_TTL (23), len 8, ttl 7
    back = parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire)
    assert flow_from_ofp(back) == flow
