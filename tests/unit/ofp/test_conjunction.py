"""Conjunctive matches over OpenFlow: NXAST_CONJUNCTION and NXM_NX_CONJ_ID, both ways,
and the errors Open vSwitch answers for what it refuses."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from vnet.datapath import Switch
from vnet.ofp.agent import Agent
from vnet.ofp.client import OFClient, OFClientError
from vnet.ofp.convert import DP, OFError, flow_from_ofp, flow_mod_to_ofp, instructions_from_ofp
from vnet.pipeline import parse_flow
from vnet.pipeline.ofctl import format_flow

from .agent_thread import agent_thread, memory_switch

# what `ovs-ofctl -O OpenFlow13 add-flow` (Open vSwitch 3.1) sends for each text,
# xid left out (tests/integration/test_conjunction.py checks it against a live one)
OVS_SENDS = {
    "priority=5,conj_id=7,in_port=1,ip,reg0=3,actions=output:2": (
        "000000000000000000000000000000000000000000000005ffffffffffffffffffffffff00000000"
        "0001002200014a0400000007800000040000000180000a0208000001000400000003000000000000"
        "000400180000000000000010000000020000000000000000"
    ),
    "priority=5,tcp,tp_dst=80,actions=conjunction(7,2/3),conjunction(9,1/2)": (
        "000000000000000000000000000000000000000000000005ffffffffffffffffffffffff00000000"
        "0001001580000a020800800014010680001c0200500000000004002800000000ffff001000002320"
        "0022010300000007ffff0010000023200022000200000009"
    ),
    "table=2,priority=9,ip,nw_src=10.0.0.0/24,actions=note:aa,conjunction(4294967295,64/64)": (
        "000000000000000000000000000000000200000000000009ffffffffffffffffffffffff00000000"
        "0001001680000a020800800017080a000000ffffff0000000004002800000000ffff001000002320"
        "0008aa0000000000ffff00100000232000223f40ffffffff"
    ),
}


def _wire(text: str) -> bytes:
    msg = flow_mod_to_ofp(parse_flow(text).flow)
    msg.serialize()
    return bytes(msg.buf)


@pytest.mark.parametrize("text", list(OVS_SENDS))
def test_encoded_as_ovs_ofctl_sends_and_decoded_back(text: str) -> None:
    wire = _wire(text)
    assert wire[8:].hex() == OVS_SENDS[text]
    back = flow_from_ofp(parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire))
    assert back == parse_flow(text).flow  # a note's padding included


def _mod(actions: list[Any], match: Any = None, more: tuple[Any, ...] = ()) -> Any:
    ins = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []
    return parser.OFPFlowMod(
        DP,
        priority=10,
        match=match if match is not None else parser.OFPMatch(eth_type=0x800),
        instructions=[*ins, *more],
    )


def _conj(k: int, n: int, conj_id: int = 7) -> Any:
    return parser.NXActionConjunction(k - 1, n, conj_id)  # the wire counts clauses from 0


NXBAC_BAD_CONJUNCTION = (0xFFFF, 15)  # an experimenter error, Nicira's id first in the data
REFUSED = [
    ("k > n", _mod([_conj(3, 2)]), NXBAC_BAD_CONJUNCTION),
    ("k = 0 on the wire is clause 1, n = 1", _mod([_conj(1, 1)]), NXBAC_BAD_CONJUNCTION),
    ("n > 64", _mod([_conj(1, 65)]), NXBAC_BAD_CONJUNCTION),
    ("with output", _mod([_conj(1, 2), parser.OFPActionOutput(1)]), NXBAC_BAD_CONJUNCTION),
    ("after output", _mod([parser.OFPActionOutput(1), _conj(1, 2)]), NXBAC_BAD_CONJUNCTION),
    (
        "with goto_table",
        _mod([_conj(1, 2)], more=(parser.OFPInstructionGotoTable(2),)),
        NXBAC_BAD_CONJUNCTION,
    ),
    (
        "with write_metadata",
        _mod([_conj(1, 2)], more=(parser.OFPInstructionWriteMetadata(1, 1),)),
        NXBAC_BAD_CONJUNCTION,
    ),
    (
        "in write_actions",
        _mod([], more=(parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [_conj(1, 2)]),)),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
    ),
    (
        "masked conj_id",
        _mod([parser.OFPActionOutput(1)], parser.OFPMatch(conj_id=(7, 0xFF))),
        (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_MASK),
    ),
]


@pytest.fixture
def switch() -> Iterator[tuple[Switch, str]]:
    sw = memory_switch("c", 2)
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    with agent_thread(agent):
        yield sw, f"tcp:127.0.0.1:{agent.bound_ports()[0]}"


def test_refused_as_open_vswitch_refuses(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    with OFClient(target) as c:
        for what, msg, (type_, code) in REFUSED:
            with pytest.raises(OFClientError) as e:
                c.transact(msg)
            assert (e.value.type, e.value.code) == (type_, code), what
            if type_ == 0xFFFF:
                assert e.value.data[:4] == struct.pack("!I", 0x2320), what
                assert e.value.data[4:6] == b"\x04\x0e", what  # then the request
        # the connection goes on, nothing was installed
        assert c.multipart(parser.OFPFlowStatsRequest(DP)) == []
    assert sw.pipeline.rules() == []


def test_installed_and_read_back(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    texts = [
        "table=0,priority=10,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2),conjunction(8,1/2)",
        "table=0,priority=10,ip,nw_dst=10.0.0.9,actions=conjunction(7,2/2)",
        "table=0,priority=1,conj_id=7,ip,actions=output:2",
    ]
    with OFClient(target) as c:
        for t in texts:
            c.transact(flow_mod_to_ofp(parse_flow(t).flow))
        stats = c.multipart(parser.OFPFlowStatsRequest(DP))
    back = sorted(format_flow(flow_from_ofp(s)) for s in stats)
    assert back == sorted(texts)
    assert sw.pipeline.tables[0].classifier.clause_count == 2


def test_a_move_from_conj_id_is_refused() -> None:
    # Open vSwitch takes it and reads 0; vnet has no packet slot to read it from
    move = parser.NXActionRegMove(
        src_field="conj_id", dst_field="reg0", n_bits=32, src_ofs=0, dst_ofs=0
    )

    with pytest.raises(OFError) as e:
        instructions_from_ofp([parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [move])])
    assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT)


def test_frames_charge_the_conj_id_flow_only(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    frame = bytes.fromhex(  # UDP 10.0.0.1 -> 10.0.0.2, from port 1
        "020000000002020000000001080045000026000100004011f96a0a0000010a000002"
        "03e807d0001200000000000000000000000000000000"
    )
    texts = [
        "priority=10,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)",
        "priority=10,udp,tp_dst=2000,actions=conjunction(7,2/2)",
        "priority=1,conj_id=7,actions=output:2",
    ]
    with OFClient(target) as c:
        for t in texts:
            c.transact(flow_mod_to_ofp(parse_flow(t).flow))
        # between transactions the agent's loop is idle: frames fed from here race nothing
        sw.receive_batch(sw.ports[1], [(b"", frame)] * 6, 1.0)
        assert sw.fast_hits == 5  # the switch's cache serves a conjunction's decision too
        stats = c.multipart(parser.OFPFlowStatsRequest(DP))
        (tb,) = [t for t in c.multipart(parser.OFPTableStatsRequest(DP)) if t.table_id == 0]
    counts = {format_flow(flow_from_ofp(s)): (s.packet_count, s.byte_count) for s in stats}
    assert counts == {
        "table=0,priority=10,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)": (0, 0),
        "table=0,priority=10,udp,tp_dst=2000,actions=conjunction(7,2/2)": (0, 0),
        "table=0,priority=1,conj_id=7,actions=output:2": (6, 6 * len(frame)),
    }
    assert (tb.lookup_count, tb.matched_count) == (6, 6)
