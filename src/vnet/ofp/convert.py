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

Open vSwitch's conjunctive match travels as it does: NXAST_CONJUNCTION
(the wire's clause counts from 0, the text's from 1) and NXM_NX_CONJ_ID,
first in a match as `nx_put_raw` writes it.  A conjunction that is malformed
or shares its flow with anything but notes is NXBAC_BAD_CONJUNCTION (an
experimenter error), a masked `conj_id` BAD_MATCH/BAD_MASK -- what Open
vSwitch answers.

A write-actions instruction holds only what an action set runs (set_field,
load, push/pop_vlan, dec_ttl, group, output); anything else is refused with
BAD_ACTION/BAD_TYPE when a switch takes the flow (`check_flow`), as Open
vSwitch refuses a note or a conjunction there.  Open vSwitch also takes ct,
ct_clear and resubmit in an action set (each a possible final action);
vnet's action set does not run them, so it refuses them the same way rather
than take a flow whose first packet it could not handle.  Decoding refuses
none of them: a controller reads back whatever Open vSwitch holds.

Open vSwitch's `check_pkt_larger` (NXAST_CHECK_PKT_LARGER, subtype 49) has
no class in os-ken: it goes out as the raw experimenter action Open vSwitch
reads (the length, the destination bit's offset, its field's NXM header,
zeros to 24 bytes) and comes back from os-ken's unknown-subtype action.

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
    ActionError,
    CheckPktLarger,
    Conjunction,
    Controller,
    Ct,
    CtClear,
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
    set_key,
)
from ..pipeline.classifier import check_clause
from ..pipeline.fields import BY_INDEX, CONJ_ID, Field, FieldError, lookup
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
    """An OpenFlow error to send back: (type, code) and a message for logs.

    An extension's error (`experimenter` set) goes as OpenFlow 1.3's
    experimenter error: type 0xffff, `code` is its exp_type, and the
    experimenter id comes before the offending request's bytes.
    """

    def __init__(
        self, type_: int, code: int, message: str, *, experimenter: int | None = None
    ) -> None:
        self.type = type_
        self.code = code
        self.experimenter = experimenter
        super().__init__(message)


NX_VENDOR_ID = 0x00002320
NXBAC_BAD_CONJUNCTION = 15  # Open vSwitch: NX1.2+(15)
NXAST_CHECK_PKT_LARGER = 49
_CPL = struct.Struct("!HH4s6x")  # pkt_len, offset, dst's NXM header, padding to 24 bytes


def _bad_conjunction(message: str) -> OFError:
    """A conjunction that is malformed or not alone (Open vSwitch's NXBAC_BAD_CONJUNCTION)."""
    return OFError(
        ofp.OFPET_EXPERIMENTER, NXBAC_BAD_CONJUNCTION, message, experimenter=NX_VENDOR_ID
    )


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
    # the connection's original tuple (NXM_NX_CT_NW_PROTO .. NXM_NX_CT_TP_DST)
    f"field_{(_NXM1 << 7) | 119}": ("ct_nw_proto", 1),
    f"field_{(_NXM1 << 7) | 120}": ("ct_nw_src", 4),
    f"field_{(_NXM1 << 7) | 121}": ("ct_nw_dst", 4),
    f"field_{(_NXM1 << 7) | 122}": ("ct_ipv6_src", 16),
    f"field_{(_NXM1 << 7) | 123}": ("ct_ipv6_dst", 16),
    f"field_{(_NXM1 << 7) | 124}": ("ct_tp_src", 2),
    f"field_{(_NXM1 << 7) | 125}": ("ct_tp_dst", 2),
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


def _key_field(name: str) -> Field:
    """A field an action reads or writes: one the packet carries (not conj_id)."""
    f = _field(name)
    if f.index == CONJ_ID:
        raise OFError(
            ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT, f"{f.name} can only be matched"
        )
    return f


def _to_int(f: Field, v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str) and f.name in _RAW_BY_FIELD:
        try:
            raw = base64.b64decode(v, validate=True)
        except ValueError:
            raw = b""
        # Open vSwitch may report a value in fewer bytes than the field has (a Geneve
        # option's leading zeros left out, 'AQ==' for 1): right-aligned
        if 0 < len(raw) <= _RAW_BY_FIELD[f.name][1]:
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
    # os-ken orders OXMs by class and type number, which puts an NXM or class
    # 0x1000 field before the eth_type/ip_proto it depends on (a switch checks
    # prerequisites in order); Open vSwitch's order is that of `nx_put_raw`
    m._fields2.sort(key=lambda kv: _OVS_RANK.get(_field(kv[0]).index, 999))  # type: ignore[attr-defined]
    return m


# the order Open vSwitch writes a match's fields in (lib/nx-match.c, nx_put_raw), by slot
_OVS_ORDER = (
    "in_port", "eth_src", "eth_dst", "eth_type", "vlan_vid", "vlan_pcp",
    "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "ip_frag", "ip_dscp", "ip_ecn",
    "ip_ttl", "ipv6_label", "ip_proto", "tp_src", "tp_dst", "tcp_flags",
    "icmp_type", "icmp_code", "nd_reserved", "nd_target", "nd_options_type",
    "nd_sll", "nd_tll", "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha",
    "tun_id", "tun_src", "tun_dst", "tun_ipv6_src", "tun_ipv6_dst",
    *(f"tun_metadata{i}" for i in range(4)),
    *(f"reg{i}" for i in range(16)),
    "ct_state", "ct_zone", "ct_mark", "ct_label", "ct_nw_src", "ct_ipv6_src",
    "ct_nw_dst", "ct_ipv6_dst", "ct_nw_proto", "ct_tp_src", "ct_tp_dst", "metadata",
)  # fmt: skip
_OVS_RANK = {fk.INDEX[name]: i for i, name in enumerate(_OVS_ORDER)}
_OVS_RANK[CONJ_ID] = -1  # nx_put_raw writes conj_id before in_port


def _nbits(ofs_nbits: int) -> tuple[int, int]:
    return ofs_nbits >> 6, (ofs_nbits & 0x3F) + 1


def _bad_action(what: str, code: int = ofp.OFPBAC_BAD_TYPE) -> OFError:
    return OFError(ofp.OFPET_BAD_ACTION, code, f"unsupported action {what}")


def _action_from_ofp(a: Any) -> Action:
    cls = type(a).__name__
    if cls == "OFPActionOutput":
        return Output(a.port, a.max_len) if a.port == ofp.OFPP_CONTROLLER else Output(a.port)
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
            f = _key_field(a.dst)
            value = a.value
            if isinstance(value, tuple):
                return SetField(f.index, _to_int(f, value[0]), _to_int(f, value[1]))
            return SetField(f.index, _to_int(f, value))
        f = _key_field(a.dst)
        ofs, nbits = _nbits(a.ofs_nbits)
        if f.index == fk.IN_PORT and (ofs, nbits) == (0, 16):
            return SetField(f.index, a.value)  # as `_action_to_ofp` writes set_field(in_port)
        return RegLoad(f.index, ofs, nbits, a.value)
    if cls == "NXActionRegMove":
        return RegMove(
            _key_field(a.src_field).index,
            a.src_ofs,
            _key_field(a.dst_field).index,
            a.dst_ofs,
            a.n_bits,
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
    if cls == "NXActionCT":
        return _ct_from_ofp(a)
    if cls == "NXActionCTClear":
        return CtClear()
    if cls == "NXActionConjunction":
        try:
            return Conjunction(a.id, a.clause + 1, a.n_clauses)
        except ActionError as e:
            raise _bad_conjunction(str(e)) from None
    if cls == "NXActionNAT":
        raise _bad_action("nat outside ct()", ofp.OFPBAC_BAD_ARGUMENT)
    if cls == "NXActionUnknown" and a.subtype == NXAST_CHECK_PKT_LARGER:
        return _cpl_from_ofp(bytes(a.data or b""))
    if cls.startswith("NX"):
        raise _bad_action(cls, ofp.OFPBAC_BAD_EXPERIMENTER_TYPE)
    raise _bad_action(cls)


def _cpl_from_ofp(data: bytes) -> CheckPktLarger:
    if len(data) < _CPL.size:
        raise _bad_action("check_pkt_larger: too short", ofp.OFPBAC_BAD_LEN)
    pkt_len, ofs, hdr = _CPL.unpack_from(data)
    (n,) = struct.unpack("!I", hdr)
    f = _key_field(ofp.oxm_to_user_header(n >> 9))
    if ofs >= f.bits:
        raise _bad_action(f"check_pkt_larger: bit {ofs} of {f.name}", ofp.OFPBAC_BAD_ARGUMENT)
    return CheckPktLarger(pkt_len, f.index, ofs)


def _cpl_to_ofp(a: CheckPktLarger, ctx: dict[int, int]) -> Any:
    hdr = _nxm_header(_osken_name(BY_INDEX[a.slot], ctx))
    return parser.NXActionUnknown(
        NXAST_CHECK_PKT_LARGER, bytearray(_CPL.pack(a.pkt_len, a.ofs, hdr))
    )


# NXActionNAT flags, and the flags of ct
_NAT_SRC, _NAT_DST = 1, 2
_NAT_FLAG_BITS = {"persistent": 4, "hash": 8, "random": 16}
_CT_COMMIT, _CT_FORCE = 1, 2


def _ct_from_ofp(a: Any) -> Ct:
    zone, zone_field = 0, None
    if a.zone_src:
        f = _key_field(a.zone_src)
        ofs, nbits = _nbits(a.zone_ofs_nbits)
        zone_field = (f.index, ofs, nbits)
    else:
        zone = a.zone_ofs_nbits
    nat: Nat | None = None
    exec_: list[Action] = []
    for sub in a.actions:
        if type(sub).__name__ == "NXActionNAT":
            nat = _nat_from_ofp(sub)
            continue
        act = _action_from_ofp(sub)
        if not isinstance(act, (SetField, RegLoad)) or act.slot not in (fk.CT_MARK, fk.CT_LABEL):
            raise _bad_action(f"ct: exec of {act.format()}", ofp.OFPBAC_BAD_ARGUMENT)
        exec_.append(act)
    table = None if a.recirc_table == 0xFF else a.recirc_table
    return Ct(
        bool(a.flags & _CT_COMMIT),
        zone,
        table,
        nat,
        tuple(exec_),
        zone_field,
        a.alg,
        bool(a.flags & _CT_FORCE),
    )


def _nat_from_ofp(a: Any) -> Nat:
    kind = "src" if a.flags & _NAT_SRC else "dst" if a.flags & _NAT_DST else ""
    flags = tuple(n for n, bit in _NAT_FLAG_BITS.items() if a.flags & bit)
    lo = a.range_ipv4_min or a.range_ipv6_min or ""
    hi = a.range_ipv4_max or a.range_ipv6_max or ""
    return Nat(kind, lo, hi, a.range_proto_min or 0, a.range_proto_max or 0, flags)


def _ct_to_ofp(a: Ct, ctx: dict[int, int]) -> Any:
    subs: list[Any] = []
    if a.nat is not None:
        n = a.nat
        flags = {"src": _NAT_SRC, "dst": _NAT_DST, "": 0}[n.kind]
        for name in n.flags:
            flags |= _NAT_FLAG_BITS[name]
        six = ":" in n.addr_min
        subs.append(
            parser.NXActionNAT(
                flags,
                range_ipv4_min=n.addr_min if not six else "",
                range_ipv4_max=n.addr_max if not six else "",
                range_ipv6_min=n.addr_min if six else "",
                range_ipv6_max=n.addr_max if six else "",
                range_proto_min=n.port_min or None,
                range_proto_max=n.port_max or None,
            )
        )
    subs += [_action_to_ofp(e, ctx) for e in a.exec_]
    if a.zone_field is not None:
        slot, ofs, nbits = a.zone_field
        zone_src, zone_ofs_nbits = _osken_name(BY_INDEX[slot], ctx), (ofs << 6) | (nbits - 1)
    else:
        zone_src, zone_ofs_nbits = "", a.zone
    return parser.NXActionCT(
        flags=(_CT_COMMIT if a.commit else 0) | (_CT_FORCE if a.force else 0),
        zone_src=zone_src,
        zone_ofs_nbits=zone_ofs_nbits,
        recirc_table=0xFF if a.table is None else a.table,
        alg=a.alg,
        actions=subs,
    )


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
    ins = Instructions(apply, meter, clear, write, metadata, goto)
    if any(isinstance(a, Conjunction) for a in write):
        raise _bad_action("conjunction in write_actions")
    try:
        check_clause(ins)
    except ActionError as e:
        raise _bad_conjunction(str(e)) from None
    return ins


def _action_to_ofp(a: Action, ctx: dict[int, int]) -> Any:
    if isinstance(a, Output):
        # max_len means something only to the controller port: 0 elsewhere, as OVS sends
        return parser.OFPActionOutput(a.port, a.max_len if a.port == ofp.OFPP_CONTROLLER else 0)
    if isinstance(a, Group):
        return parser.OFPActionGroup(a.group_id)
    if isinstance(a, SetField) and a.slot == fk.IP_TTL and a.mask is None:
        return parser.OFPActionSetNwTtl(a.value)
    if isinstance(a, SetField) and a.slot == fk.IN_PORT and a.mask is None:
        # OpenFlow 1.3's set_field may not write in_port; Nicira's load of the 16-bit
        # NXM_OF_IN_PORT may (what "output to the port it came in by" needs cleared)
        return _RegLoad(ofs_nbits=15, dst="in_port_nxm", value=a.value)
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
    if isinstance(a, Conjunction):
        return parser.NXActionConjunction(a.clause - 1, a.n_clauses, a.conj_id)
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
    if isinstance(a, Ct):
        return _ct_to_ofp(a, ctx)
    if isinstance(a, CtClear):
        return parser.NXActionCTClear()
    if isinstance(a, CheckPktLarger):
        return _cpl_to_ofp(a, ctx)
    if isinstance(a, (Nat, Meter)):
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
    """What a switch refuses of a flow that decoded: OFError BAD_ACTION/BAD_TYPE for
    a write-action its action set cannot run (`actions.set_key`), BAD_ACTION/
    MATCH_INCONSISTENT for an apply-action the match does not make meaningful
    (`actions.check_consistency`); `msg`, the FLOW_MOD the flow came in, tells which
    of the fields sharing a slot each set_field named.  Decoding alone refuses
    neither: a controller reads back whatever Open vSwitch holds."""
    for a in flow.instructions.write:
        try:
            set_key(a)
        except ActionError:
            raise _bad_action(f"{a.format()} in write_actions") from None
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
        out_port=ofp.OFPP_ANY,  # as Open vSwitch sends them: no filter
        out_group=ofp.OFPG_ANY,
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
