"""Conversion between os-ken's OpenFlow 1.3 codec objects and vnet's pipeline types.

os-ken (`os_ken.ofproto.ofproto_v1_3_parser`) encodes and decodes the wire
format, Nicira extensions included; vnet's own types (`Match`, `Flow`,
actions, `GroupDesc`) are what the switch runs.  This module is the only
place the two meet, in both directions, so a flow read back from the switch
is the same value that was sent.

Anything vnet cannot honour raises `OFError` with the OpenFlow error type
and code to answer with: an unknown field (BAD_MATCH/BAD_FIELD), a field
without its prerequisite (BAD_PREREQ), an action or instruction vnet does not
implement (BAD_ACTION/BAD_TYPE, BAD_EXPERIMENTER_TYPE,
BAD_INSTRUCTION/UNSUP_INST), a set_field of a field vnet does not know
(BAD_ACTION/BAD_SET_TYPE), an apply-action the match does not make meaningful
(BAD_ACTION/MATCH_INCONSISTENT, `check_flow`).  Nothing is dropped silently:
MPLS and PBB (their fields, push/pop/TTL actions) are refused this way.

OFPAT_SET_NW_TTL is `set_field` of `ip_ttl` (the hop limit under IPv6, as
in Open vSwitch) and goes back to a controller as OFPAT_SET_NW_TTL.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..packet import flowkey as fk
from ..packet.addr import ip4_int, ip4_str, ip6_int, ip6_str, mac_int, mac_str
from ..pipeline.actions import (
    Action,
    Controller,
    Ct,
    DecTtl,
    Group,
    MatchInconsistent,
    Meter,
    Nat,
    Note,
    Output,
    PopVlan,
    PushVlan,
    RegLoad,
    RegMove,
    Resubmit,
    SetField,
    check_consistency,
)
from ..pipeline.fields import BY_INDEX, Field, FieldError, lookup
from ..pipeline.flow import Flow, Instructions
from ..pipeline.groups import Bucket, GroupDesc, GroupType
from ..pipeline.match import Match, PrereqError

__all__ = [
    "GROUP_TYPES_TO_OFP",
    "OFError",
    "actions_from_ofp",
    "actions_to_ofp",
    "bucket_to_ofp",
    "check_flow",
    "flow_from_ofp",
    "flow_mod_to_ofp",
    "group_from_ofp",
    "instructions_from_ofp",
    "instructions_to_ofp",
    "match_from_ofp",
    "match_to_ofp",
]


class OFError(Exception):
    """An OpenFlow error to send back: (type, code) and a message for logs."""

    def __init__(self, type_: int, code: int, message: str) -> None:
        self.type = type_
        self.code = code
        super().__init__(message)


# os-ken's OXM names that differ from vnet's
_FROM_OSKEN = {
    "tun_ipv4_src": "tun_src",
    "tun_ipv4_dst": "tun_dst",
    "ipv6_flabel": "ipv6_label",
    "ipv6_nd_target": "nd_target",
    "ipv6_nd_sll": "nd_sll",
    "ipv6_nd_tll": "nd_tll",
    "nw_ttl": "ip_ttl",
    "tunnel_id_nxm": "tun_id",
}
_TO_OSKEN = {
    "tun_id": "tunnel_id",
    "tun_src": "tun_ipv4_src",
    "tun_dst": "tun_ipv4_dst",
    "ipv6_label": "ipv6_flabel",
    "nd_target": "ipv6_nd_target",
    "nd_sll": "ipv6_nd_sll",
    "nd_tll": "ipv6_nd_tll",
    "ip_ttl": "nw_ttl",
    "icmp_type": "icmpv4_type",
    "icmp_code": "icmpv4_code",
}
_OSKEN_NAMES = {f.name for f in ofp.oxm_types}
# OXMs os-ken has no table for travel under its generic name `field_<oxm type>`
# with the value as base64 bytes: Open vSwitch's ND extensions (class 0x1000)
# and the Geneve option fields NXM_NX_TUN_METADATA0..3 (class 1, fields 40..43;
# 4 bytes each, the option length vnet maps them to)
_ERICOXM, _NXM1 = 0x1000, 0x0001
_RAW = {
    f"field_{(_ERICOXM << 7) | 1}": ("nd_reserved", 4),
    f"field_{(_ERICOXM << 7) | 2}": ("nd_options_type", 1),
    **{f"field_{(_NXM1 << 7) | (40 + i)}": (f"tun_metadata{i}", 4) for i in range(4)},
}
_RAW_BY_FIELD = {name: (raw, width) for raw, (name, width) in _RAW.items()}
OFPP_IN_PORT16 = 0xFFF8


def _nxm_header(name: str) -> bytes:
    """A field's 32-bit OXM/NXM header as move and load carry it.

    os-ken writes a zero length for fields it has no table for (which Open
    vSwitch and os-ken's own parser refuse); the generic ones get theirs here.
    """
    if name in _RAW:
        return struct.pack("!I", (int(name[6:]) << 9) | _RAW[name][1])
    buf = bytearray()
    ofp.oxm_serialize_header(ofp.oxm_from_user_header(name), buf, 0)
    return bytes(buf)


class _RegMove(parser.NXActionRegMove):  # type: ignore[misc]
    def serialize_body(self) -> bytearray:
        data = bytearray(struct.pack(self._fmt_str, self.n_bits, self.src_ofs, self.dst_ofs))
        return data + _nxm_header(self.src_field) + _nxm_header(self.dst_field)


class _RegLoad(parser.NXActionRegLoad):  # type: ignore[misc]
    def serialize_body(self) -> bytearray:
        (dst,) = struct.unpack("!I", _nxm_header(self.dst))
        return bytearray(struct.pack(self._fmt_str, self.ofs_nbits, dst, self.value))


def _field(name: str) -> Field:
    if name in _RAW:
        return lookup(_RAW[name][0])
    if name not in _FROM_OSKEN and name.endswith("_nxm"):
        name = name[:-4]  # os-ken's names for NXM fields a switch reports (eth_src_nxm)
    try:
        return lookup(_FROM_OSKEN.get(name, name))
    except FieldError:
        raise OFError(
            ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD, f"unsupported field {name}"
        ) from None


def _to_int(f: Field, v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str) and f.name in _RAW_BY_FIELD:
        try:
            raw = base64.b64decode(v, validate=True)
        except ValueError:
            raw = b""
        if len(raw) == _RAW_BY_FIELD[f.name][1]:
            return int.from_bytes(raw, "big")
    elif isinstance(v, str):
        if f.kind == "mac":
            return mac_int(v)
        if f.kind == "ipv4":
            return ip4_int(v)
        if f.kind == "ipv6":
            return ip6_int(v)
    raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE, f"{f.name}: bad value {v!r}")


def _from_int(f: Field, v: int) -> Any:
    if f.name in _RAW_BY_FIELD:
        return base64.b64encode(v.to_bytes(_RAW_BY_FIELD[f.name][1], "big")).decode()
    if f.kind == "mac":
        return mac_str(v)
    if f.kind == "ipv4":
        return ip4_str(v)
    if f.kind == "ipv6":
        return ip6_str(v)
    return v


def match_from_ofp(m: parser.OFPMatch) -> Match:
    pairs = []
    for name, spec in m._fields2:
        f = _field(name)
        if isinstance(spec, tuple):
            value, mask = _to_int(f, spec[0]), _to_int(f, spec[1])
            if not f.maskable:
                raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_MASK, f"{f.name} is not maskable")
        else:
            value, mask = _to_int(f, spec), f.full_mask
        pairs.append((f, value, mask))
    try:
        return Match.build(pairs)
    except PrereqError as e:
        raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ, str(e)) from None
    except FieldError as e:
        raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD, str(e)) from None


def _osken_name(f: Field, items: dict[int, int]) -> str:
    """The os-ken OXM name for a vnet field, by the protocol the match says."""
    name = f.name
    if name in ("tp_src", "tp_dst"):
        proto = items.get(fk.IP_PROTO, 6)
        prefix = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto, "tcp")
        return f"{prefix}_{name[3:]}"
    if name in ("icmp_type", "icmp_code") and items.get(fk.ETH_TYPE) == 0x86DD:
        return "icmpv6_" + name[5:]
    if name in _RAW_BY_FIELD:
        return _RAW_BY_FIELD[name][0]
    name = _TO_OSKEN.get(name, name)
    if name not in _OSKEN_NAMES:
        raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD, f"{f.name} has no OXM encoding")
    return name


def match_to_ofp(m: Match) -> parser.OFPMatch:
    items = {i: v for i, v, _ in m.items}
    kw: dict[str, Any] = {}
    for slot, value, mask in m.items:
        f = BY_INDEX[slot]
        name = _osken_name(f, items)
        if mask == f.full_mask:
            kw[name] = _from_int(f, value)
        else:
            kw[name] = (_from_int(f, value), _from_int(f, mask))
    m = parser.OFPMatch(**kw)
    # os-ken orders OXMs by type number, which puts class 0x1000 before the
    # eth_type/ip_proto it depends on; a switch checks prerequisites in order
    m._fields2.sort(key=lambda kv: kv[0] in _RAW)  # type: ignore[attr-defined]
    return m


def _nbits(ofs_nbits: int) -> tuple[int, int]:
    return ofs_nbits >> 6, (ofs_nbits & 0x3F) + 1


def _bad_action(what: str, code: int = ofp.OFPBAC_BAD_TYPE) -> OFError:
    return OFError(ofp.OFPET_BAD_ACTION, code, f"unsupported action {what}")


def _action_from_ofp(a: Any) -> Action:
    cls = type(a).__name__
    if cls == "OFPActionOutput":
        return Output(a.port, a.max_len)
    if cls == "OFPActionGroup":
        return Group(a.group_id)
    if cls == "OFPActionSetField":
        try:
            f = _field(a.key)
        except OFError:
            raise OFError(
                ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE, f"set_field of {a.key}"
            ) from None
        if not f.writable:
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE, f"{f.name} is read-only")
        value = a.value
        if isinstance(value, tuple):
            return SetField(f.index, _to_int(f, value[0]), _to_int(f, value[1]))
        v = _to_int(f, value)
        if f.kind == "vlan_vid":
            v &= 0xFFF
        return SetField(f.index, v)
    if cls == "OFPActionPushVlan":
        return PushVlan(a.ethertype)
    if cls == "OFPActionPopVlan":
        return PopVlan()
    if cls in ("OFPActionDecNwTtl", "NXActionDecTtl"):
        return DecTtl()
    if cls == "OFPActionSetNwTtl":
        return SetField(fk.IP_TTL, a.nw_ttl)
    if cls in ("NXActionRegLoad", "NXActionRegLoad2"):
        if cls == "NXActionRegLoad2":
            f = _field(a.dst)
            value = a.value
            if isinstance(value, tuple):
                return SetField(f.index, _to_int(f, value[0]), _to_int(f, value[1]))
            return SetField(f.index, _to_int(f, value))
        f = _field(a.dst)
        ofs, nbits = _nbits(a.ofs_nbits)
        return RegLoad(f.index, ofs, nbits, a.value)
    if cls == "NXActionRegMove":
        return RegMove(
            _field(a.src_field).index, a.src_ofs, _field(a.dst_field).index, a.dst_ofs, a.n_bits
        )
    if cls in ("NXActionResubmit", "NXActionResubmitTable"):
        port = None if a.in_port in (OFPP_IN_PORT16, ofp.OFPP_IN_PORT) else a.in_port
        table = getattr(a, "table_id", 0xFF)
        return Resubmit(port, None if table == 0xFF else table)
    if cls == "NXActionNote":
        return Note(bytes(a.note))
    if cls == "NXActionController":
        reasons = {
            ofp.OFPR_NO_MATCH: "no_match",
            ofp.OFPR_ACTION: "action",
            ofp.OFPR_INVALID_TTL: "invalid_ttl",
        }
        return Controller(a.max_len, reasons.get(a.reason, "action"), a.controller_id)
    if cls in ("NXActionCT", "NXActionNAT", "NXActionCTClear"):
        raise _bad_action(f"{cls} (connection tracking is not available)")
    if cls.startswith("NX"):
        raise _bad_action(cls, ofp.OFPBAC_BAD_EXPERIMENTER_TYPE)
    raise _bad_action(cls)


def actions_from_ofp(actions: Iterable[Any]) -> tuple[Action, ...]:
    return tuple(_action_from_ofp(a) for a in actions)


def instructions_from_ofp(insts: Sequence[Any]) -> Instructions:
    apply: tuple[Action, ...] = ()
    write: tuple[Action, ...] = ()
    clear = False
    meter = goto = None
    metadata = None
    for ins in insts:
        cls = type(ins).__name__
        if cls == "OFPInstructionActions":
            if ins.type == ofp.OFPIT_APPLY_ACTIONS:
                apply = actions_from_ofp(ins.actions)
            elif ins.type == ofp.OFPIT_WRITE_ACTIONS:
                write = actions_from_ofp(ins.actions)
            else:
                clear = True
        elif cls == "OFPInstructionGotoTable":
            goto = ins.table_id
        elif cls == "OFPInstructionWriteMetadata":
            metadata = (ins.metadata, ins.metadata_mask)
        elif cls == "OFPInstructionMeter":
            meter = ins.meter_id
        else:
            raise OFError(
                ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST, f"unsupported instruction {cls}"
            )
    return Instructions(apply, meter, clear, write, metadata, goto)


def _action_to_ofp(a: Action, ctx: dict[int, int]) -> Any:
    if isinstance(a, Output):
        return parser.OFPActionOutput(a.port, a.max_len)
    if isinstance(a, Group):
        return parser.OFPActionGroup(a.group_id)
    if isinstance(a, SetField) and a.slot == fk.IP_TTL and a.mask is None:
        return parser.OFPActionSetNwTtl(a.value)
    if isinstance(a, SetField):
        f = BY_INDEX[a.slot]
        name = _osken_name(f, ctx)
        if a.mask is not None:
            return parser.NXActionRegLoad2(
                dst=name, value=_from_int(f, a.value), mask=_from_int(f, a.mask)
            )
        v = a.value | 0x1000 if f.kind == "vlan_vid" else a.value
        return parser.OFPActionSetField(**{name: _from_int(f, v)})
    if isinstance(a, PushVlan):
        return parser.OFPActionPushVlan(a.tpid)
    if isinstance(a, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(a, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(a, RegLoad):
        f = BY_INDEX[a.slot]
        return _RegLoad(
            ofs_nbits=(a.ofs << 6) | (a.nbits - 1), dst=_osken_name(f, ctx), value=a.value
        )
    if isinstance(a, RegMove):
        return _RegMove(
            src_field=_osken_name(BY_INDEX[a.src], ctx),
            dst_field=_osken_name(BY_INDEX[a.dst], ctx),
            n_bits=a.nbits,
            src_ofs=a.src_ofs,
            dst_ofs=a.dst_ofs,
        )
    if isinstance(a, Resubmit):
        return parser.NXActionResubmitTable(
            in_port=OFPP_IN_PORT16 if a.port is None else a.port,
            table_id=0xFF if a.table is None else a.table,
        )
    if isinstance(a, Note):
        return parser.NXActionNote(note=list(a.data))
    if isinstance(a, Controller):
        reasons = {
            "no_match": ofp.OFPR_NO_MATCH,
            "action": ofp.OFPR_ACTION,
            "invalid_ttl": ofp.OFPR_INVALID_TTL,
        }
        return parser.NXActionController(
            max_len=a.max_len,
            controller_id=a.controller_id,
            reason=reasons.get(a.reason, ofp.OFPR_ACTION),
        )
    if isinstance(a, (Ct, Nat, Meter)):
        raise _bad_action(a.name)
    raise _bad_action(type(a).__name__)


def actions_to_ofp(actions: Iterable[Action], match: Match | None = None) -> list[Any]:
    """os-ken actions; `match` (the flow's) tells which protocol a shared slot speaks
    (set_field on the ICMP type slot is icmpv6_type under an IPv6 match, udp_dst
    under a UDP one), as the switch checks the action against the match."""
    ctx = {} if match is None else {i: v for i, v, _ in match.items}
    return [_action_to_ofp(a, ctx) for a in actions]


def instructions_to_ofp(ins: Instructions, match: Match | None = None) -> list[Any]:
    out: list[Any] = []
    if ins.meter is not None:
        out.append(parser.OFPInstructionMeter(ins.meter, ofp.OFPIT_METER))
    if ins.apply:
        out.append(
            parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions_to_ofp(ins.apply, match))
        )
    if ins.clear:
        out.append(parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []))
    if ins.write:
        out.append(
            parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, actions_to_ofp(ins.write, match))
        )
    if ins.metadata is not None:
        out.append(parser.OFPInstructionWriteMetadata(*ins.metadata))
    if ins.goto is not None:
        out.append(parser.OFPInstructionGotoTable(ins.goto))
    return out


_GROUP_TYPES = {
    ofp.OFPGT_ALL: GroupType.ALL,
    ofp.OFPGT_SELECT: GroupType.SELECT,
    ofp.OFPGT_INDIRECT: GroupType.INDIRECT,
    ofp.OFPGT_FF: GroupType.FAST_FAILOVER,
}
GROUP_TYPES_TO_OFP = {v: k for k, v in _GROUP_TYPES.items()}


def group_from_ofp(group_id: int, type_: int, buckets: Sequence[Any]) -> GroupDesc:
    t = _GROUP_TYPES.get(type_)
    if t is None:
        raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_TYPE, f"group type {type_}")
    return GroupDesc(
        group_id,
        t,
        tuple(
            Bucket(actions_from_ofp(b.actions), b.weight, b.watch_port, b.watch_group)
            for b in buckets
        ),
    )


def bucket_to_ofp(b: Bucket) -> Any:
    return parser.OFPBucket(b.weight, b.watch_port, b.watch_group, actions_to_ofp(b.actions))


def flow_from_ofp(msg: Any) -> Flow:
    return Flow(
        match=match_from_ofp(msg.match),
        instructions=instructions_from_ofp(msg.instructions),
        table=msg.table_id,
        priority=msg.priority,
        cookie=msg.cookie,
        idle_timeout=msg.idle_timeout,
        hard_timeout=msg.hard_timeout,
        flags=msg.flags,
        origin="openflow",
    )


def check_flow(flow: Flow, msg: Any = None) -> None:
    """OFError BAD_ACTION/MATCH_INCONSISTENT for an apply-action the match does not
    make meaningful (`actions.check_consistency`); `msg`, the FLOW_MOD the flow came
    in, tells which of the fields sharing a slot each set_field named."""
    named: list[Field | None] = []
    for ins in getattr(msg, "instructions", ()):
        if type(ins).__name__ == "OFPInstructionActions" and ins.type == ofp.OFPIT_APPLY_ACTIONS:
            named = [
                _field(a.key) if type(a).__name__ == "OFPActionSetField" else None
                for a in ins.actions
            ]
    try:
        check_consistency(flow.match, flow.instructions.apply, named)
    except MatchInconsistent as e:
        raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_MATCH_INCONSISTENT, str(e)) from None


def flow_mod_to_ofp(flow: Flow, command: int = ofp.OFPFC_ADD) -> Any:
    """A FLOW_MOD (controller side) carrying `flow`."""
    return parser.OFPFlowMod(
        DP,
        cookie=flow.cookie,
        table_id=flow.table,
        command=command,
        idle_timeout=flow.idle_timeout,
        hard_timeout=flow.hard_timeout,
        priority=flow.priority,
        flags=flow.flags,
        match=match_to_ofp(flow.match),
        instructions=instructions_to_ofp(flow.instructions, flow.match),
    )


class _Datapath:
    """What os-ken's message classes want to know about a datapath: the protocol modules."""

    ofproto = ofp
    ofproto_parser = parser
    id = 0


DP = _Datapath()
