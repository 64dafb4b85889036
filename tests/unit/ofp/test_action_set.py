"""write_actions over OpenFlow: what the switch's action set can run is taken, the rest
refused as BAD_ACTION/BAD_TYPE with the connection kept up.

Open vSwitch 3.1 refuses a note or a conjunction in an action set with that error
(`ofpacts_pull_openflow_instructions`: "disallowed action in action set"); it takes
ct, ct_clear and resubmit there as the set's final action, which vnet's action set
does not run -- refused the same way rather than taken and failing on the first packet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from vnet.datapath import Switch
from vnet.ofp.client import OFClient, OFClientError
from vnet.ofp.convert import DP, OFError, actions_to_ofp, check_flow, flow_from_ofp
from vnet.pipeline import parse_flow
from vnet.pipeline.ofctl import format_flow

from .agent_thread import memory_switch, serving

# frames from port 1: UDP 10.0.0.1 -> 10.0.0.2
FRAME = bytes.fromhex(
    "020000000002020000000001080045000026000100004011f96a0a0000010a000002"
    "03e807d0001200000000000000000000000000000000"
)
REFUSED = ["resubmit(,2)", "ct(table=1,zone=1)", "ct(commit)", "ct_clear", "note:01.02"]


def _write(actions: str) -> Any:
    """A FLOW_MOD for ip whose write_actions holds `actions`, encoded as vnet encodes
    them in apply_actions (the same bytes `ovs-ofctl` sends for either instruction)."""
    acts = actions_to_ofp(parse_flow(f"ip,actions={actions}").flow.instructions.apply)
    return parser.OFPFlowMod(
        DP,
        priority=10,
        match=parser.OFPMatch(eth_type=0x800),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, acts)],
    )


@pytest.fixture
def switch() -> Iterator[tuple[Switch, str]]:
    sw = memory_switch("w", 2)
    with serving(sw) as target:
        yield sw, target


def test_refused_with_bad_type_and_the_connection_goes_on(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    with OFClient(target) as c:
        for actions in REFUSED:
            with pytest.raises(OFClientError) as e:
                c.transact(_write(actions))
            assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE)
            assert e.value.data[:2] == b"\x04\x0e", actions  # the offending FLOW_MOD
        assert sw.pipeline.rules() == []
        # the same connection still works: an action set the switch runs is taken
        c.transact(_write("set_field:10.0.0.9->ip_dst,output:2"))
        (st,) = c.multipart(parser.OFPFlowStatsRequest(DP))
    assert format_flow(flow_from_ofp(st)) == (
        "table=0,priority=10,ip,actions=write_actions(set_field:10.0.0.9->nw_dst,output:2)"
    )
    sw.receive_batch(sw.ports[1], [(b"", FRAME)], 1.0)
    (out,) = sw.ports[2].device.frames()  # type: ignore[attr-defined]
    assert out[30:34] == bytes([10, 0, 0, 9])


@pytest.mark.parametrize("actions", REFUSED)
def test_decoded_for_a_controller_refused_by_a_switch(actions: str) -> None:
    # a controller reads back what Open vSwitch holds (it takes ct and resubmit
    # there); only the switch's acceptance refuses
    flow = flow_from_ofp(_write(actions))
    assert [a.format() for a in flow.instructions.write] == [
        a.format() for a in parse_flow(f"ip,actions={actions}").flow.instructions.apply
    ]
    with pytest.raises(OFError, match="in write_actions") as e:
        check_flow(flow)
    assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE)
