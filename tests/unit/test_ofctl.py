from __future__ import annotations

import pytest

from vnet.pipeline import FlowSyntaxError, parse_flow
from vnet.pipeline.flow import Rule
from vnet.pipeline.ofctl import format_dump, format_flow, parse_flows, parse_packet

ROUND_TRIP = [
    "table=0,priority=100,in_port=1,dl_vlan=10,actions=pop_vlan,output:2",
    "table=1,cookie=0x5,idle_timeout=10,priority=10,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=push_vlan:0x8100,set_field:4106->vlan_vid,goto_table:2",
    "table=2,priority=5,ct_state=+new+trk,ip,metadata=0x1,reg0=0x5/0xff,actions=meter:1,resubmit(,3),load:0x1->NXM_NX_REG1[0..3],move:NXM_NX_REG0[]->NXM_NX_REG2[],dec_ttl,ct(commit,table=4,zone=5,nat(src=10.0.0.1)),write_metadata:0x1/0x1",
    "table=3,priority=1,icmp6,icmp_type=135,nd_target=fe80::1,nd_sll=00:00:00:00:00:01,actions=CONTROLLER:65535,clear_actions,write_actions(output:3)",
    "table=3,arp,arp_op=1,arp_spa=10.0.0.1,arp_tpa=10.0.0.2,arp_sha=00:00:00:00:00:01,actions=set_field:00:11:22:33:44:55->dl_src,IN_PORT,FLOOD,ALL,NORMAL,LOCAL",
    "table=4,ipv6,tun_id=0x5,ipv6_src=2001:db8::/32,nw_frag=later,actions=set_field:0x5->tun_id,controller(reason=no_match,max_len=128)",
    "table=4,priority=7,udp6,ipv6_label=0x5,nw_tos=16,nw_ecn=1,nw_ttl=3,tp_src=53,actions=drop",
    "table=4,priority=7,tcp,tcp_flags=+syn-ack,actions=output(port=2,max_len=100)",
    "table=0,priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=note:01.02.03.04.05.06.07.08.09.0a",
    "table=0,vlan_tci=0x1000/0x1000,dl_vlan_pcp=3,actions=mod_dl_dst:02:00:00:00:00:09,output:2",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_format_parse_round_trip(text: str) -> None:
    f = parse_flow(text).flow
    printed = format_flow(f)
    assert parse_flow(printed).flow == f
    assert format_flow(parse_flow(printed).flow) == printed


def test_dump_format_is_parsed_back() -> None:
    f = parse_flow("table=1,cookie=0x9,priority=10,tcp,tp_dst=80,actions=output:2").flow
    r = Rule(f, now=1.0)
    r.packet_count, r.byte_count = 3, 180
    line = format_dump(r, now=2.5)
    assert line.startswith(
        " cookie=0x9, duration=1.500s, table=1, n_packets=3, n_bytes=180, priority=10,tcp,tp_dst=80 actions=output:2"
    )
    assert parse_flow(line).flow == f


def test_spellings_normalise() -> None:
    a = parse_flow(
        "dl_type=0x0800,nw_proto=6,tcp_dst=80,actions=strip_vlan,mod_nw_tos:16,set_tunnel:7"
    ).flow
    b = parse_flow("tcp,tp_dst=80,actions=pop_vlan,set_field:4->ip_dscp,set_field:0x7->tun_id").flow
    assert a == b
    assert parse_flow("arp,nw_src=10.0.0.1,actions=drop").flow.match.get("arp_spa") == (
        0x0A000001,
        0xFFFFFFFF,
    )


@pytest.mark.parametrize(
    ("text", "token", "column", "words"),
    [
        ("tp_dst=80,actions=drop", "tp_dst=80", 1, "requires"),
        ("in_port=1,frobnicate=3,actions=drop", "frobnicate=3", 11, "unknown field"),
        ("ip,nw_dst=10.0.0.300,actions=drop", "nw_dst=10.0.0.300", 4, "invalid IPv4"),
        ("in_port=1,actions=output:2,bogus:3", "bogus:3", 28, "unknown action"),
        ("in_port=1,actions=drop,output:2", "drop", 19, "drop"),
        ("in_port=1,actions=goto_table:2,output:1", "output:1", 32, "out of order"),
        ("reg0=0x100/0xff,actions=drop", "reg0=0x100/0xff", 1, "outside its mask"),
        ("table=300,actions=drop", "table=300", 1, "out of range"),
        ("in_port=1", "in_port=1", 10, "missing actions"),
        (
            "actions=load:0x1ff->NXM_NX_REG0[0..3]",
            "load:0x1ff->NXM_NX_REG0[0..3]",
            9,
            "does not fit",
        ),
    ],
)
def test_errors_name_token_and_column(text: str, token: str, column: int, words: str) -> None:
    with pytest.raises(FlowSyntaxError) as e:
        parse_flow(text)
    assert e.value.token == token
    assert e.value.column == column
    assert words in str(e.value)


def test_flow_file_errors_carry_line_numbers() -> None:
    with pytest.raises(FlowSyntaxError) as e:
        parse_flows("# comment\n\npriority=1,actions=drop\npriority=2,in_port=x,actions=drop\n")
    assert e.value.line == 4 and e.value.token == "in_port=x"
    flows = parse_flows("priority=1,actions=drop  # trailing comment\n", "f")
    assert flows[0].origin == "f:1"


def test_packet_needs_exact_values() -> None:
    with pytest.raises(FlowSyntaxError, match="exact"):
        parse_packet("ip,nw_dst=10.0.0.0/8")
