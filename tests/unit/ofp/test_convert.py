"""The codec boundary: vnet's flows to os-ken's messages and back, byte for byte."""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3_parser as parser

from vnet.ofp.convert import DP, flow_from_ofp, flow_mod_to_ofp
from vnet.pipeline import parse_flow

# `ovs-ofctl -O OpenFlow13 add-flow` (Open vSwitch 3.1) sends these for
#   icmp6,icmpv6_type=135,nd_reserved=5,nd_options_type=1,
#   actions=set_field:0x60000000->nd_reserved,set_field:2->nd_options_type,IN_PORT
OVS_ND_MATCH = "0001002180000a0286dd800014013a80003a01871000020400000005100004010100000000000000"
OVS_ND_SET_FIELDS = "001900101000020460000000000000000019001010000401020000000000000000"


def _wire(text: str) -> bytes:
    msg = flow_mod_to_ofp(parse_flow(text).flow)
    msg.serialize()
    return bytes(msg.buf)


def test_nd_extension_fields_travel_as_open_vswitch_sends_them() -> None:
    text = (
        "icmp6,icmpv6_type=135,nd_reserved=5,nd_options_type=1,"
        "actions=set_field:0x60000000->nd_reserved,set_field:2->nd_options_type,IN_PORT"
    )
    wire = _wire(text)
    # the class-0x1000 OXMs come after the eth_type/ip_proto they depend on
    assert OVS_ND_MATCH in wire.hex()
    assert OVS_ND_SET_FIELDS in wire.hex()
    back = parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire)
    assert flow_from_ofp(back) == parse_flow(text).flow


def test_set_field_names_follow_the_match() -> None:
    # the ICMP type and port slots are shared: the match says which protocol speaks
    v6 = _wire("icmp6,icmp_type=135,actions=set_field:136->icmpv6_type")
    v4 = _wire("icmp,icmp_type=8,actions=set_field:0->icmp_type")
    udp = _wire("udp,actions=set_field:53->udp_dst")
    assert "80003a0188" in v6.hex()  # OXM icmpv6_type (29) = 136
    assert "8000260100" in v4.hex()  # OXM icmpv4_type (19) = 0
    assert "800020020035" in udp.hex()  # OXM udp_dst (16) = 53


def test_tun_metadata_travels_as_nxm_tun_metadata() -> None:
    # NXM_NX_TUN_METADATA0: class 0x0001, field 40, 4 bytes (the option vnet maps)
    text = "tun_metadata0=0x10002,actions=set_field:0x7->tun_metadata1"
    wire = _wire(text)
    assert "0001500400010002" in wire.hex() and "0001520400000007" in wire.hex()
    back = parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire)
    assert flow_from_ofp(back) == parse_flow(text).flow


def test_a_geneve_option_value_in_fewer_bytes_is_read_right_aligned() -> None:
    """Open vSwitch reports a value without its leading zero bytes (flow stats read back)."""
    import base64

    import pytest

    from vnet.ofp.convert import OFError, _to_int
    from vnet.pipeline.fields import lookup

    f = lookup("tun_metadata0")
    assert _to_int(f, "AQ==") == 1
    assert _to_int(f, base64.b64encode(b"\x00\x01\x80\x00").decode()) == 0x18000
    with pytest.raises(OFError):
        _to_int(f, base64.b64encode(b"\x01\x02\x03\x04\x05").decode())  # too long


def test_in_port_is_cleared_by_a_nicira_load_and_read_back_as_set() -> None:
    # OpenFlow 1.3's set_field may not write in_port (Open vSwitch refuses it with
    # OFPBAC_BAD_SET_ARGUMENT); NXAST_REG_LOAD of NXM_OF_IN_PORT[0..15] may
    text = "ip,actions=set_field:0->in_port,output:2"
    wire = _wire(text)
    assert "ffff0018000023200007000f00000002" in wire.hex()  # reg_load, 16 bits, NXM_OF_IN_PORT
    back = parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire)
    assert flow_from_ofp(back) == parse_flow(text).flow
