"""The OpenFlow agent in-process: os-ken's parser and our client as the peer, no root."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from vnet.datapath import Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ofp.agent import Agent
from vnet.ofp.client import OFClient, OFClientError
from vnet.ofp.convert import DP, flow_mod_to_ofp
from vnet.pipeline.ofctl import format_flow, parse_flow

from .agent_thread import agent_thread, memory_switch


@pytest.fixture
def switch() -> Iterator[tuple[Switch, str]]:
    sw = memory_switch("t", 3)
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    with agent_thread(agent):
        yield sw, f"tcp:127.0.0.1:{agent.bound_ports()[0]}"


def flow_mod(text: str) -> parser.OFPFlowMod:
    return flow_mod_to_ofp(parse_flow(text).flow)


def test_flow_mod_and_stats_round_trip(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    with OFClient(target) as c:
        c.transact(flow_mod("priority=10,ip,nw_dst=10.0.0.0/8,actions=output:2"))
        c.transact(flow_mod("table=1,reg3=0x5,actions=load:0x2->NXM_NX_REG1[0..7],resubmit(,2)"))
        stats = c.multipart(parser.OFPFlowStatsRequest(DP))
        assert len(stats) == 2
        assert sorted(s.priority for s in stats) == [10, 0x8000]
        (agg,) = c.multipart(
            parser.OFPAggregateStatsRequest(
                DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch()
            )
        )
        assert agg.flow_count == 2
        (feat,) = c.transact(parser.OFPFeaturesRequest(DP))
        assert feat.datapath_id == sw.dpid and feat.n_buffers == 0
        names = sorted(
            p.name.decode() if isinstance(p.name, bytes) else p.name
            for p in c.multipart(parser.OFPPortDescStatsRequest(DP, 0))
        )
        assert names == ["p1", "p2", "p3"]
    assert len(sw.pipeline.rules()) == 2


def test_errors_keep_the_connection(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    with OFClient(target) as c:
        with pytest.raises(OFClientError) as e:
            ct = parser.NXActionCT(  # alg=69: a TFTP helper this switch does not have
                flags=1, zone_src="", zone_ofs_nbits=0, recirc_table=255, alg=69, actions=[]
            )
            c.transact(
                parser.OFPFlowMod(
                    DP,
                    match=parser.OFPMatch(eth_type=0x800),
                    instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [ct])],
                )
            )
        assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE)
        with pytest.raises(OFClientError) as e:
            c.transact(flow_mod("actions=group:9"))
        assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP)
        with pytest.raises(OFClientError) as e:
            c.transact(flow_mod("table=254,actions=drop"))
        assert e.value.type == ofp.OFPET_BAD_INSTRUCTION
        # unknown message type 99
        c.send_raw(struct.pack("!BBHI", 4, 99, 8, 7))
        with pytest.raises(OFClientError) as e:
            c.transact()
        assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE)
        # a packet-out whose actions_len runs past the message
        c.send_raw(
            struct.pack("!BBHIIIH6x", 4, ofp.OFPT_PACKET_OUT, 24, 8, ofp.OFP_NO_BUFFER, 1, 64)
        )
        with pytest.raises(OFClientError) as e:
            c.transact()
        assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN)
        # a group-mod with a bucket length of 3
        c.send_raw(struct.pack("!BBHIHBxIH", 4, ofp.OFPT_GROUP_MOD, 18, 9, 0, 0, 1, 3))
        with pytest.raises(OFClientError):
            c.transact()
        # after all that, the connection still works and nothing changed
        assert c.multipart(parser.OFPFlowStatsRequest(DP)) == []
        assert c.transact(parser.OFPEchoRequest(DP, data=b"hi"))[0].data == b"hi"
    assert sw.pipeline.rules() == [] and sw.pipeline.groups == {}


def test_packet_out_and_group_and_meter(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    frame = bytes.fromhex("020000000002020000000001080045000014000100004011f97c0a0000010a000002")
    with OFClient(target) as c:
        c.transact(
            parser.OFPPacketOut(
                DP, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, [parser.OFPActionOutput(2)], frame
            )
        )
        dev2 = sw.ports[2].device
        assert isinstance(dev2, MemoryDevice) and dev2.frames() == [frame]
        c.transact(
            parser.OFPGroupMod(
                DP,
                ofp.OFPGC_ADD,
                ofp.OFPGT_ALL,
                5,
                [parser.OFPBucket(actions=[parser.OFPActionOutput(3)])],
            )
        )
        (g,) = c.multipart(parser.OFPGroupDescStatsRequest(DP, 0))
        assert g.group_id == 5 and g.type == ofp.OFPGT_ALL
        c.transact(
            parser.OFPMeterMod(
                DP, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 1, [parser.OFPMeterBandDrop(rate=10)]
            )
        )
        (m,) = c.multipart(parser.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL))
        assert m.meter_id == 1 and m.bands[0].rate == 10
        with pytest.raises(OFClientError) as e:
            c.transact(
                parser.OFPMeterMod(
                    DP, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 1, [parser.OFPMeterBandDrop(rate=10)]
                )
            )
        assert (e.value.type, e.value.code) == (
            ofp.OFPET_METER_MOD_FAILED,
            ofp.OFPMMFC_METER_EXISTS,
        )


def test_roles(switch: tuple[Switch, str]) -> None:
    _, target = switch
    with OFClient(target) as a, OFClient(target) as b:
        (r,) = a.transact(parser.OFPRoleRequest(DP, ofp.OFPCR_ROLE_MASTER, 1))
        assert r.role == ofp.OFPCR_ROLE_MASTER
        b.transact(parser.OFPRoleRequest(DP, ofp.OFPCR_ROLE_SLAVE, 1))
        with pytest.raises(OFClientError) as e:
            b.transact(flow_mod("actions=drop"))
        assert e.value.code == ofp.OFPBRC_IS_SLAVE
        with pytest.raises(OFClientError) as e:
            b.transact(parser.OFPRoleRequest(DP, ofp.OFPCR_ROLE_MASTER, 0))  # stale generation
        assert e.value.type == ofp.OFPET_ROLE_REQUEST_FAILED


def test_move_and_load_of_geneve_metadata_and_a_zero_length_field_header(
    switch: tuple[Switch, str],
) -> None:
    sw, target = switch
    text = (
        "table=6,reg7=0x2,actions=set_field:0x2->tun_metadata0,"
        "move:NXM_NX_REG6[0..14]->NXM_NX_TUN_METADATA0[16..30],"
        "load:0x1->NXM_NX_TUN_METADATA0[0..3],output:1"
    )
    with OFClient(target) as c:
        c.transact(flow_mod(text))
        (st,) = c.multipart(parser.OFPFlowStatsRequest(DP))
        # a field os-ken has no table for, written with a zero length (as os-ken itself
        # serializes one): refused with an error, and the connection stays up
        bad = parser.NXActionRegMove(
            src_field="reg6", dst_field="field_168", n_bits=4, src_ofs=0, dst_ofs=0
        )
        with pytest.raises(OFClientError) as e:
            c.transact(
                parser.OFPFlowMod(
                    DP,
                    table_id=2,
                    match=parser.OFPMatch(),
                    instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [bad])],
                )
            )
        assert e.value.type == ofp.OFPET_BAD_REQUEST
        (feat,) = c.transact(parser.OFPFeaturesRequest(DP))
        assert feat.datapath_id == sw.dpid
    (rule,) = sw.pipeline.rules()
    text = format_flow(rule.flow)
    assert "move:NXM_NX_REG6[0..14]->NXM_NX_TUN_METADATA0[16..30]" in text
    assert "load:0x1->NXM_NX_TUN_METADATA0[0..3]" in text
    assert len(st.instructions[0].actions) == 4


def test_flow_stats_count_frames_the_cache_served(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    frame = bytes.fromhex(
        "020000000002020000000001080045000026000100004011f96a0a0000010a000002"
        "03e807d0001200000000000000000000000000000000"
    )
    with OFClient(target) as c:
        c.transact(flow_mod("priority=10,in_port=1,actions=output:2"))
        # between transactions the agent's loop is idle: frames fed from here race nothing
        sw.receive_batch(sw.ports[1], [(b"", frame)] * 6, 1.0)
        assert sw.fast_hits == 5  # the first took the full path, the rest the cache
        (st,) = c.multipart(parser.OFPFlowStatsRequest(DP))
        assert (st.packet_count, st.byte_count) == (6, 6 * len(frame))
        (tb,) = [t for t in c.multipart(parser.OFPTableStatsRequest(DP)) if t.table_id == 0]
        assert (tb.lookup_count, tb.matched_count) == (6, 6)
