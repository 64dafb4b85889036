"""Encoding the messages a switch sends: replies, PACKET_IN, PORT_STATUS, errors.

os-ken is a controller's library: it decodes everything, but it serializes
only what a controller sends.  The switch's own messages are packed here with
os-ken's wire layouts (`ofproto_v1_3.*_PACK_STR`) and its serializers for the
parts they share with controller messages (OXM matches, instructions,
buckets, meter bands), so the bytes agree with what os-ken and ovs-ofctl
parse -- the tests decode every message below with both.

Multipart replies larger than one message (64 KB) are split with
OFPMPF_REPLY_MORE, as OpenFlow 1.3 §7.3.5 requires.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

__all__ = [
    "MAX_MSG",
    "message",
    "multipart_replies",
    "pack_error",
    "pack_features",
    "pack_flow_removed",
    "pack_flow_stats",
    "pack_match",
    "pack_packet_in",
    "pack_port",
    "pack_port_status",
]

VERSION = ofp.OFP_VERSION
MAX_MSG = 0xFFFF
_HDR = struct.Struct(ofp.OFP_HEADER_PACK_STR)
_PORT = struct.Struct(ofp.OFP_PORT_PACK_STR)
_FLOW_STATS = struct.Struct(ofp.OFP_FLOW_STATS_0_PACK_STR)
_MP_REPLY = struct.Struct(ofp.OFP_MULTIPART_REPLY_PACK_STR)


def message(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return _HDR.pack(VERSION, msg_type, _HDR.size + len(body), xid) + body


def pack_match(m: parser.OFPMatch) -> bytes:
    buf = bytearray()
    m.serialize(buf, 0)
    return bytes(buf)


def _serialize_all(items: Sequence[Any]) -> bytes:
    buf = bytearray()
    for it in items:
        it.serialize(buf, len(buf))
    return bytes(buf)


def pack_error(xid: int, type_: int, code: int, data: bytes) -> bytes:
    return message(ofp.OFPT_ERROR, xid, struct.pack("!HH", type_, code) + data[:256])


def pack_hello(xid: int = 0) -> bytes:
    # version bitmap element: only OpenFlow 1.3 (bit 4)
    elem = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, 1 << VERSION)
    return message(ofp.OFPT_HELLO, xid, elem)


def pack_features(xid: int, dpid: int, n_tables: int) -> bytes:
    caps = ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS | ofp.OFPC_GROUP_STATS
    body = struct.pack(ofp.OFP_SWITCH_FEATURES_PACK_STR, dpid, 0, n_tables, 0, caps, 0)
    return message(ofp.OFPT_FEATURES_REPLY, xid, body)


def pack_config(xid: int, flags: int, miss_send_len: int) -> bytes:
    return message(ofp.OFPT_GET_CONFIG_REPLY, xid, struct.pack("!HH", flags, miss_send_len))


def pack_port(
    port_no: int,
    hw_addr: int,
    name: str,
    config: int,
    state: int,
    speed_kbps: int = 10_000_000,
) -> bytes:
    curr = ofp.OFPPF_10GB_FD | ofp.OFPPF_COPPER
    return _PORT.pack(
        port_no,
        hw_addr.to_bytes(6, "big"),
        name.encode()[:15],
        config,
        state,
        curr,
        0,
        0,
        0,
        speed_kbps,
        speed_kbps,
    )


def pack_port_status(reason: int, port: bytes) -> bytes:
    return message(ofp.OFPT_PORT_STATUS, 0, struct.pack("!B7x", reason) + port)


def pack_packet_in(
    reason: int, table_id: int, cookie: int, match: parser.OFPMatch, data: bytes, total_len: int
) -> bytes:
    body = struct.pack(
        ofp.OFP_PACKET_IN_PACK_STR, ofp.OFP_NO_BUFFER, total_len, reason, table_id, cookie
    )
    return message(ofp.OFPT_PACKET_IN, 0, body + pack_match(match) + b"\x00\x00" + data)


def pack_flow_removed(
    cookie: int,
    priority: int,
    reason: int,
    table_id: int,
    duration: float,
    idle: int,
    hard: int,
    packets: int,
    nbytes: int,
    match: parser.OFPMatch,
) -> bytes:
    sec = int(duration)
    nsec = int((duration - sec) * 1e9)
    body = struct.pack(
        "!QHBBIIHHQQ", cookie, priority, reason, table_id, sec, nsec, idle, hard, packets, nbytes
    )
    return message(ofp.OFPT_FLOW_REMOVED, 0, body + pack_match(match))


def pack_role(xid: int, role: int, generation: int) -> bytes:
    return message(
        ofp.OFPT_ROLE_REPLY, xid, struct.pack(ofp.OFP_ROLE_REQUEST_PACK_STR, role, generation)
    )


def pack_flow_stats(
    table_id: int,
    duration: float,
    priority: int,
    idle: int,
    hard: int,
    flags: int,
    cookie: int,
    packets: int,
    nbytes: int,
    match: parser.OFPMatch,
    instructions: Sequence[Any],
) -> bytes:
    tail = pack_match(match) + _serialize_all(instructions)
    sec = int(duration)
    nsec = int((duration - sec) * 1e9)
    head = _FLOW_STATS.pack(
        _FLOW_STATS.size + len(tail),
        table_id,
        sec,
        nsec,
        priority,
        idle,
        hard,
        flags,
        cookie,
        packets,
        nbytes,
    )
    return head + tail


def pack_group_desc(type_: int, group_id: int, buckets: Sequence[Any]) -> bytes:
    b = _serialize_all(buckets)
    return struct.pack(ofp.OFP_GROUP_DESC_STATS_PACK_STR, 8 + len(b), type_, group_id) + b


def pack_group_stats(
    group_id: int,
    ref_count: int,
    packets: int,
    nbytes: int,
    duration: float,
    buckets: Sequence[tuple[int, int]],
) -> bytes:
    sec = int(duration)
    tail = b"".join(struct.pack("!QQ", p, b) for p, b in buckets)
    return (
        struct.pack(
            ofp.OFP_GROUP_STATS_PACK_STR,
            40 + len(tail),
            group_id,
            ref_count,
            packets,
            nbytes,
            sec,
            int((duration - sec) * 1e9),
        )
        + tail
    )


def pack_meter_config(flags: int, meter_id: int, bands: Sequence[Any]) -> bytes:
    b = _serialize_all(bands)
    return struct.pack(ofp.OFP_METER_CONFIG_PACK_STR, 8 + len(b), flags, meter_id) + b


def pack_meter_stats(
    meter_id: int,
    flows: int,
    packets: int,
    nbytes: int,
    duration: float,
    bands: Sequence[tuple[int, int]],
) -> bytes:
    sec = int(duration)
    tail = b"".join(struct.pack("!QQ", p, b) for p, b in bands)
    return (
        struct.pack(
            ofp.OFP_METER_STATS_PACK_STR,
            meter_id,
            40 + len(tail),
            flows,
            packets,
            nbytes,
            sec,
            int((duration - sec) * 1e9),
        )
        + tail
    )


def multipart_replies(xid: int, mp_type: int, items: Sequence[bytes]) -> list[bytes]:
    """One or more MULTIPART_REPLY messages carrying `items`, split at 64 KB."""
    room = MAX_MSG - _HDR.size - _MP_REPLY.size
    chunks: list[list[bytes]] = [[]]
    size = 0
    for it in items:
        if chunks[-1] and size + len(it) > room:
            chunks.append([])
            size = 0
        chunks[-1].append(it)
        size += len(it)
    out = []
    for i, chunk in enumerate(chunks):
        flags = ofp.OFPMPF_REPLY_MORE if i < len(chunks) - 1 else 0
        out.append(
            message(ofp.OFPT_MULTIPART_REPLY, xid, _MP_REPLY.pack(mp_type, flags) + b"".join(chunk))
        )
    return out


# OpenFlow basic OXM fields vnet matches and sets: (field number, length)
_OXM_BASIC = (
    (0, 4), (2, 8), (3, 6), (4, 6), (5, 2), (6, 2), (7, 1), (8, 1), (9, 1), (10, 1),
    (11, 4), (12, 4), (13, 2), (14, 2), (15, 2), (16, 2), (17, 2), (18, 2), (19, 1), (20, 1),
    (21, 2), (22, 4), (23, 4), (24, 6), (25, 6), (26, 16), (27, 16), (28, 4), (29, 1), (30, 1),
    (31, 16), (32, 6), (33, 6), (38, 8),
)  # fmt: skip
_INSTRUCTIONS = (
    ofp.OFPIT_GOTO_TABLE,
    ofp.OFPIT_WRITE_METADATA,
    ofp.OFPIT_WRITE_ACTIONS,
    ofp.OFPIT_APPLY_ACTIONS,
    ofp.OFPIT_CLEAR_ACTIONS,
    ofp.OFPIT_METER,
)
_ACTIONS = (
    ofp.OFPAT_OUTPUT,
    ofp.OFPAT_PUSH_VLAN,
    ofp.OFPAT_POP_VLAN,
    ofp.OFPAT_GROUP,
    ofp.OFPAT_DEC_NW_TTL,
    ofp.OFPAT_SET_FIELD,
)


def _prop(type_: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    pad = (-length) % 8
    return struct.pack("!HH", type_, length) + payload + bytes(pad)


def _oxm_headers(with_mask: bool) -> bytes:
    return b"".join(
        struct.pack(
            "!I", (0x8000 << 16) | (f << 9) | (int(with_mask) << 8) | (n * 2 if with_mask else n)
        )
        for f, n in _OXM_BASIC
    )


def pack_table_features(table_id: int, n_tables: int, name: str) -> bytes:
    """One ofp_table_features with the eight properties OpenFlow 1.3 requires."""
    ins = b"".join(struct.pack("!HH", t, 4) for t in _INSTRUCTIONS)
    acts = b"".join(struct.pack("!HH", t, 4) for t in _ACTIONS)
    fields = _oxm_headers(False)
    props = b"".join(
        (
            _prop(ofp.OFPTFPT_INSTRUCTIONS, ins),
            _prop(ofp.OFPTFPT_NEXT_TABLES, bytes(range(table_id + 1, n_tables))),
            _prop(ofp.OFPTFPT_WRITE_ACTIONS, acts),
            _prop(ofp.OFPTFPT_APPLY_ACTIONS, acts),
            _prop(ofp.OFPTFPT_MATCH, fields),
            _prop(ofp.OFPTFPT_WILDCARDS, fields),
            _prop(ofp.OFPTFPT_WRITE_SETFIELD, fields),
            _prop(ofp.OFPTFPT_APPLY_SETFIELD, fields),
        )
    )
    head = struct.pack(
        "!HB5x32sQQII",
        64 + len(props),
        table_id,
        name.encode()[:31],
        0xFFFFFFFFFFFFFFFF,
        0xFFFFFFFFFFFFFFFF,
        0,
        1_000_000,
    )
    return head + props
