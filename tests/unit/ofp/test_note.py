"""NXAST_NOTE as Open vSwitch has it: the text it prints, the bytes it sends, one value.

Open vSwitch keeps a note as it decodes it -- the zeros that pad the action to a
multiple of 8 bytes included -- and prints it so (`ovs-ofctl parse-flow`, a round
trip through the wire, and `dump-flows` alike).  A note parsed from text is that
same value, so a flow read back equals the flow sent.
"""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3_parser as parser

from vnet.ofp.convert import DP, flow_from_ofp, flow_mod_to_ofp
from vnet.pipeline import parse_flow
from vnet.pipeline.ofctl import format_flow

# text -> (what `ovs-ofctl -O OpenFlow13 parse-flow` 3.1 prints, the action's bytes)
OVS = {
    "note:01.02": ("note:01.02.00.00.00.00", "ffff0010000023200008010200000000"),
    "note:aa": ("note:aa.00.00.00.00.00", "ffff0010000023200008aa0000000000"),
    "note:": ("note:00.00.00.00.00.00", "ffff0010000023200008000000000000"),
    "note:01.00": ("note:01.00.00.00.00.00", "ffff0010000023200008010000000000"),
    "note:01.02.03.04.05.06": ("note:01.02.03.04.05.06", "ffff0010000023200008010203040506"),
    "note:01.02.03.04.05.06.07": (
        "note:01.02.03.04.05.06.07.00.00.00.00.00.00.00",
        "ffff00180000232000080102030405060700000000000000",
    ),
    "note:aa.00.00.00.00.00.00.00": (
        "note:aa.00.00.00.00.00.00.00.00.00.00.00.00.00",
        "ffff0018000023200008aa00000000000000000000000000",
    ),
}


def _wire(text: str) -> bytes:
    msg = flow_mod_to_ofp(parse_flow(text).flow)
    msg.serialize()
    return bytes(msg.buf)


@pytest.mark.parametrize("text", list(OVS))
def test_printed_and_sent_as_open_vswitch_does(text: str) -> None:
    prints, action = OVS[text]
    flow = parse_flow(f"actions={text}").flow
    assert format_flow(flow) == f"table=0,actions={prints}"
    wire = _wire(f"actions={text}")
    # the apply-actions instruction holds the note alone: its header, then the action
    assert wire.hex().endswith(action)
    assert int.from_bytes(wire[2:4], "big") == len(wire)
    back = flow_from_ofp(parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire))
    assert back == flow  # the value read back is the value sent
    assert format_flow(back) == f"table=0,actions={prints}"
    assert _wire(format_flow(back)) == wire  # and it travels again unchanged


def test_a_note_and_its_padding_are_one_value() -> None:
    assert parse_flow("actions=note:aa").flow == parse_flow("actions=note:aa.00.00.00.00.00").flow
    assert parse_flow("actions=note:aa").flow != parse_flow("actions=note:aa.01").flow
