"""Decoding the requests a switch receives.

os-ken parses what a controller receives and, of what a switch receives, only
FLOW_MOD.  The other requests are framed here with OpenFlow 1.3's layouts and
their parts -- OXM matches, actions (Nicira ones included), buckets, meter
bands -- are parsed by os-ken's element parsers, so there is still one codec
for the hard parts.  Results are plain namespaces with os-ken's attribute
names, so the agent reads every message the same way.

Every length is checked before it is trusted; a short or inconsistent
message raises `DecodeError` (answered with BAD_REQUEST/BAD_LEN).
"""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

__all__ = ["DecodeError", "decode_request"]


class DecodeError(ValueError):
    pass


def _unpack(fmt: str, raw: bytes, off: int) -> tuple[Any, ...]:
    s = struct.calcsize(fmt)
    if off + s > len(raw):
        raise DecodeError(f"message too short for its body ({len(raw)} bytes)")
    return struct.unpack_from(fmt, raw, off)


def _actions(raw: bytes, off: int, end: int) -> list[Any]:
    out = []
    while off < end:
        if off + 4 > end:
            raise DecodeError("truncated action")
        length = struct.unpack_from("!H", raw, off + 2)[0]
        if length < 8 or length % 8 or off + length > end:
            raise DecodeError(f"action length {length} is invalid")
        a = parser.OFPAction.parser(raw, off)
        out.append(a)
        off += length
    return out


def _match(raw: bytes, off: int) -> tuple[Any, int]:
    _, length = _unpack("!HH", raw, off)
    if length < 4 or off + length > len(raw):
        raise DecodeError(f"match length {length} is invalid")
    m = parser.OFPMatch.parser(raw, off)
    return m, off + ((length + 7) // 8) * 8


def decode_request(mtype: int, raw: bytes) -> Any:
    """The message of type `mtype` (header included in `raw`) as a namespace."""
    ns = SimpleNamespace
    o = 8
    try:
        if mtype == ofp.OFPT_FLOW_MOD:
            return parser.OFPFlowMod.parser(None, ofp.OFP_VERSION, mtype, len(raw), 0, raw)
        if mtype in (
            ofp.OFPT_FEATURES_REQUEST,
            ofp.OFPT_GET_CONFIG_REQUEST,
            ofp.OFPT_GET_ASYNC_REQUEST,
        ):
            return ns()
        if mtype == ofp.OFPT_SET_CONFIG:
            flags, miss = _unpack("!HH", raw, o)
            return ns(flags=flags, miss_send_len=miss)
        if mtype == ofp.OFPT_SET_ASYNC:
            return ns()
        if mtype == ofp.OFPT_PACKET_OUT:
            buffer_id, in_port, alen = _unpack("!IIH6x", raw, o)
            start = o + 16
            if start + alen > len(raw):
                raise DecodeError(f"actions_len {alen} runs past the message")
            return ns(
                buffer_id=buffer_id,
                in_port=in_port,
                actions=_actions(raw, start, start + alen),
                data=raw[start + alen :],
            )
        if mtype == ofp.OFPT_GROUP_MOD:
            command, type_, group_id = _unpack("!HBxI", raw, o)
            off = o + 8
            buckets = []
            while off < len(raw):
                blen = _unpack("!H", raw, off)[0]
                if blen < 16 or off + blen > len(raw):
                    raise DecodeError(f"bucket length {blen} is invalid")
                _actions(raw, off + 16, off + blen)  # validates lengths first
                buckets.append(parser.OFPBucket.parser(raw, off))
                off += blen
            return ns(command=command, type=type_, group_id=group_id, buckets=buckets)
        if mtype == ofp.OFPT_METER_MOD:
            command, flags, meter_id = _unpack("!HHI", raw, o)
            off = o + 8
            bands = []
            while off < len(raw):
                _, blen = _unpack("!HH", raw, off)
                if blen < 12 or off + blen > len(raw):
                    raise DecodeError(f"meter band length {blen} is invalid")
                bands.append(parser.OFPMeterBandHeader.parser(raw, off))
                off += blen
            return ns(command=command, flags=flags, meter_id=meter_id, bands=bands)
        if mtype == ofp.OFPT_ROLE_REQUEST:
            role, gen = _unpack("!I4xQ", raw, o)
            return ns(role=role, generation_id=gen)
        if mtype == ofp.OFPT_PORT_MOD:
            port_no, hw, config, mask, adv = _unpack("!I4x6s2xIII4x", raw, o)
            return ns(port_no=port_no, hw_addr=hw, config=config, mask=mask, advertise=adv)
        if mtype == ofp.OFPT_TABLE_MOD:
            table_id, config = _unpack("!B3xI", raw, o)
            return ns(table_id=table_id, config=config)
        if mtype == ofp.OFPT_MULTIPART_REQUEST:
            t, flags = _unpack("!HH4x", raw, o)
            b = o + 8
            if t in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
                table_id, out_port, out_group, cookie, cookie_mask = _unpack("!B3xII4xQQ", raw, b)
                match, _ = _match(raw, b + 32)
                return ns(
                    type=t,
                    table_id=table_id,
                    out_port=out_port,
                    out_group=out_group,
                    cookie=cookie,
                    cookie_mask=cookie_mask,
                    match=match,
                )
            if t == ofp.OFPMP_PORT_STATS:
                return ns(type=t, port_no=_unpack("!I4x", raw, b)[0])
            if t == ofp.OFPMP_GROUP:
                return ns(type=t, group_id=_unpack("!I4x", raw, b)[0])
            if t in (ofp.OFPMP_METER, ofp.OFPMP_METER_CONFIG):
                return ns(type=t, meter_id=_unpack("!I4x", raw, b)[0])
            return ns(type=t)
    except DecodeError:
        raise
    except (struct.error, KeyError, IndexError, ValueError, TypeError, AssertionError) as e:
        raise DecodeError(f"undecodable message: {e}") from None
    return None
