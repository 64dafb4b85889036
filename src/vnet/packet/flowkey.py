"""The flow key: one parse per packet into the fixed-order tuple the pipeline matches.

Design (after Open vSwitch's `miniflow_extract`): a frame is parsed exactly once,
front to back, with precompiled `struct.Struct.unpack_from` calls on the buffer,
and the result is a plain tuple whose positions are fixed (`FIELDS`, index
constants `IN_PORT` ... `PARSE_ERROR`).  A tuple is hashable (the decision cache
keys on it), cheap to slice with `operator.itemgetter` (the classifier's masked
lookups), and costs one allocation.  Every address is an int, so a mask is `&`.

The key also records where each layer starts (`L3_OFS`, `L4_OFS`, `L7_OFS`) so
actions that rewrite bytes never parse again, and `PARSE_ERROR`: a `Reason`
code, 0 when the frame parsed completely.  A malformed frame never raises: the
key stops at the last layer that parsed, the layers after it stay zero, and the
switch can count the drop by reason.  Those tail fields depend only on the
headers, so two packets of one flow still share a key.

Conventions follow OpenFlow/OVS: `eth_type` is the innermost EtherType after
VLAN tags; `vlan_vid` carries the OFPVID_PRESENT bit (0x1000) when the frame is
tagged, 0 when it is not; `ip_frag` is OVS's nw_frag (1 = fragment, 2 = later
fragment); ICMP type/code live in their own slots for v4 and v6.

`signature` is the datapath's shortcut for the bulk of traffic (IPv4 TCP,
UDP and ICMP without options, untagged or with one 802.1Q tag): the bytes of
the frame that `extract` would read, cut out without parsing, after the
length checks that decide whether `extract` parses the transport layer.  Two
frames with the same signature have the same flow key (on the same port, not
from a tunnel), so the switch can cache per signature what it did with the
first one (`vnet.datapath.switch`); building it costs a fifth of `extract`.

Trade-off: a 74-slot tuple is built even for a frame that uses a dozen fields.
Building it from constant zero sections concatenated to the parsed ones is
cheaper than per-field assignment, and keeps one code path for all lookups.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, Reason
from .geneve import GeneveOption, options_to_metadata
from .icmpv6 import ND_NA, ND_NS, parse_nd
from .ipv6 import walk_extensions

__all__ = [
    "CT_REGS",
    "CT_SLOTS",
    "FIELDS",
    "INDEX",
    "KEY_LEN",
    "MATCHABLE",
    "META_SLOTS",
    "PACKET_FIELDS",
    "TUNNEL_FIELDS",
    "TUN_SLOTS",
    "Signature",
    "TunnelInfo",
    "describe",
    "extract",
    "make_key",
    "signature",
]

FIELDS: tuple[str, ...] = (
    # 0..7 ingress port and layer 2
    "in_port",
    "eth_dst",
    "eth_src",
    "eth_type",
    "vlan_vid",
    "vlan_pcp",
    "cvlan_vid",
    "cvlan_pcp",
    # 8..17 layer 3
    "ipv4_src",
    "ipv4_dst",
    "ipv6_src",
    "ipv6_dst",
    "ipv6_label",
    "ip_proto",
    "ip_dscp",
    "ip_ecn",
    "ip_ttl",
    "ip_frag",
    # 18..22 layer 4
    "tp_src",
    "tp_dst",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    # 23..26 where layers start, and why parsing stopped (not matchable)
    "l3_ofs",
    "l4_ofs",
    "l7_ofs",
    "parse_error",
    # 27..36 ARP and neighbour discovery
    "arp_op",
    "arp_spa",
    "arp_tpa",
    "arp_sha",
    "arp_tha",
    "nd_target",
    "nd_sll",
    "nd_tll",
    "nd_reserved",
    "nd_options_type",
    # 37..46 pipeline and tunnel metadata
    "metadata",
    "tun_id",
    "tun_src",
    "tun_dst",
    "tun_ipv6_src",
    "tun_ipv6_dst",
    "tun_metadata0",
    "tun_metadata1",
    "tun_metadata2",
    "tun_metadata3",
    # 47..73 connection tracking (state, zone, mark, label, the original tuple) and registers
    "ct_state",
    "ct_zone",
    "ct_mark",
    "ct_label",
    "ct_nw_src",
    "ct_nw_dst",
    "ct_ipv6_src",
    "ct_ipv6_dst",
    "ct_nw_proto",
    "ct_tp_src",
    "ct_tp_dst",
    *(f"reg{i}" for i in range(16)),
)
INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}
KEY_LEN = len(FIELDS)

IN_PORT = 0
ETH_DST, ETH_SRC, ETH_TYPE, VLAN_VID, VLAN_PCP, CVLAN_VID, CVLAN_PCP = range(1, 8)
IPV4_SRC, IPV4_DST, IPV6_SRC, IPV6_DST, IPV6_LABEL = range(8, 13)
IP_PROTO, IP_DSCP, IP_ECN, IP_TTL, IP_FRAG = range(13, 18)
TP_SRC, TP_DST, TCP_FLAGS, ICMP_TYPE, ICMP_CODE = range(18, 23)
L3_OFS, L4_OFS, L7_OFS, PARSE_ERROR = range(23, 27)
ARP_OP, ARP_SPA, ARP_TPA, ARP_SHA, ARP_THA, ND_TARGET, ND_SLL, ND_TLL = range(27, 35)
ND_RESERVED, ND_OPTIONS_TYPE = 35, 36
METADATA, TUN_ID, TUN_SRC, TUN_DST, TUN_IPV6_SRC, TUN_IPV6_DST = range(37, 43)
TUN_METADATA0 = 43
CT_STATE, CT_ZONE, CT_MARK, CT_LABEL = range(47, 51)
CT_NW_SRC, CT_NW_DST, CT_IPV6_SRC, CT_IPV6_DST, CT_NW_PROTO, CT_TP_SRC, CT_TP_DST = range(51, 58)
REG0 = 58
CT_SLOTS = slice(CT_STATE, REG0)  # what the connection tracker sets
CT_REGS = slice(CT_STATE, KEY_LEN)  # the 27 slots carried across recirculation
META_SLOTS = slice(METADATA, KEY_LEN)  # metadata, tunnel, ct and registers
NOT_MATCHABLE = frozenset((L3_OFS, L4_OFS, L7_OFS, PARSE_ERROR))
MATCHABLE = tuple(i for i in range(KEY_LEN) if i not in NOT_MATCHABLE)
# slots that live in the frame's bytes (a write to them must touch the packet)
PACKET_FIELDS = frozenset(range(ETH_DST, L3_OFS)) | frozenset(range(ARP_OP, METADATA))
# slots a tunnel port builds the outer headers from (a write to them travels with the frame)
TUN_SLOTS = slice(TUN_ID, TUN_METADATA0 + 4)  # tun_id, src, dst, ipv6 src/dst, metadata0..3
TUNNEL_FIELDS = frozenset(range(TUN_SLOTS.start, TUN_SLOTS.stop))

VID_PRESENT = 0x1000
FRAG_ANY = 1
FRAG_LATER = 2


class TunnelInfo(NamedTuple):
    """Outer-header facts a tunnel port hands to `extract` for the inner frame."""

    tun_id: int = 0
    src: int = 0
    dst: int = 0
    ipv6_src: int = 0
    ipv6_dst: int = 0
    options: tuple[GeneveOption, ...] = ()

    def key_fields(self) -> tuple[int, ...]:
        return (
            self.tun_id,
            self.src,
            self.dst,
            self.ipv6_src,
            self.ipv6_dst,
            *options_to_metadata(self.options),
        )


_Z_L2 = (0,) * 7
_Z_L3 = (0,) * 10
_Z_L4 = (0,) * 5
_Z_ND = (0,) * 10
_Z_META = (0,) * 37  # metadata, tunnel (9), ct (11) and registers (16)
_Z_ND_META = _Z_ND + _Z_META

_ETH = struct.Struct("!HIHIH").unpack_from
_TAG = struct.Struct("!HH").unpack_from
_IP4 = struct.Struct("!BBHHHBBHII").unpack_from
_IP6 = struct.Struct("!IHBB").unpack_from
_PORTS = struct.Struct("!HH").unpack_from
_TCP = struct.Struct("!HH8xH").unpack_from
_ARP = struct.Struct("!HHBBHHIIHII").unpack_from
_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))

R = Reason
Tup = tuple[int, ...]


def _key(in_port: int, l2: Tup, l3: Tup, l4: Tup, offs: Tup, nd: Tup, meta: Tup) -> Tup:
    return (in_port,) + l2 + l3 + l4 + offs + nd + meta


def extract(
    frame: bytes | bytearray | memoryview,
    in_port: int = 0,
    tunnel: TunnelInfo | None = None,
    ct_regs: tuple[int, ...] | None = None,
    meta: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """Parse `frame` once into a flow key.  Never raises for any bytes.

    `ct_regs` (27 values: the ct fields, reg0..15), or `meta` (every slot from
    `metadata` on, as `META_SLOTS` cuts them) is given when a packet re-enters
    the pipeline after recirculation.
    """
    nd_meta: Tup
    if meta is not None:
        nd_meta = _Z_ND + meta
    elif tunnel is None and ct_regs is None:
        meta = _Z_META
        nd_meta = _Z_ND_META  # concatenated once at import
    else:
        meta = (
            0,
            *(tunnel.key_fields() if tunnel is not None else (0,) * 9),
            *(ct_regs or (0,) * 27),
        )
        nd_meta = _Z_ND + meta
    n = len(frame)
    if n < 14:
        return _key(in_port, _Z_L2, _Z_L3, _Z_L4, (0, 0, 0, R.TRUNCATED_ETH), _Z_ND, meta)
    dh, dl, sh, sl, et = _ETH(frame, 0)
    dst = (dh << 32) | dl
    src = (sh << 32) | sl
    off = 14
    vid = pcp = cvid = cpcp = 0
    if et in _TPIDS:
        if n - off < 4:
            l2 = (dst, src, et, 0, 0, 0, 0)
            return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.TRUNCATED_VLAN), _Z_ND, meta)
        tci, et = _TAG(frame, off)
        vid = (tci & 0xFFF) | VID_PRESENT
        pcp = tci >> 13
        off += 4
        if et in _TPIDS:
            if n - off < 4:
                l2 = (dst, src, et, vid, pcp, 0, 0)
                return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.TRUNCATED_VLAN), _Z_ND, meta)
            tci, et = _TAG(frame, off)
            cvid = (tci & 0xFFF) | VID_PRESENT
            cpcp = tci >> 13
            off += 4
            if et in _TPIDS:
                l2 = (dst, src, et, vid, pcp, cvid, cpcp)
                return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.TOO_MANY_VLANS), _Z_ND, meta)

    # Fast path: well-formed IPv4 TCP/UDP, the bulk of traffic: one tuple literal
    # and one concatenation.  Anything it does not accept falls through to the
    # complete, checked path below.
    if et == 0x0800 and n - off >= 20:
        vihl, tos, tlen, _ident, frag, ttl, proto, _csum, s, d = _IP4(frame, off)
        ihl = (vihl & 15) * 4
        if vihl >> 4 == 4 and 20 <= ihl <= tlen <= n - off and not frag & 0x1FFF:
            fr = 1 if frag & 0x2000 else 0
            l4 = off + ihl
            room = tlen - ihl
            if proto == 6 and room >= 20:
                sp, dp, offfl = _TCP(frame, l4)
                doff = (offfl >> 12) * 4
                if 20 <= doff <= room:
                    # fmt: off
                    return (in_port, dst, src, et, vid, pcp, cvid, cpcp, s, d, 0, 0, 0, proto, tos >> 2,
                            tos & 3, ttl, fr, sp, dp, offfl & 0xFFF, 0, 0, off, l4, l4 + doff, 0) + nd_meta
                    # fmt: on
            elif proto == 17 and room >= 8:
                sp, dp = _PORTS(frame, l4)
                # fmt: off
                return (in_port, dst, src, et, vid, pcp, cvid, cpcp, s, d, 0, 0, 0, proto, tos >> 2,
                        tos & 3, ttl, fr, sp, dp, 0, 0, 0, off, l4, l4 + 8, 0) + nd_meta
                # fmt: on

    l2 = (dst, src, et, vid, pcp, cvid, cpcp)
    if et == 0x0800:
        return _extract_ipv4(frame, in_port, l2, meta, off, n)
    if et == 0x86DD:
        return _extract_ipv6(frame, in_port, l2, meta, off, n)
    if et == 0x0806:
        if n - off < 28:
            return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.TRUNCATED_ARP), _Z_ND, meta)
        ht, pt, hl, pl, op, sha_h, sha_l, spa, tha_h, tha_l, tpa = _ARP(frame, off)
        if ht != 1 or pt != 0x0800 or hl != 6 or pl != 4:
            return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.BAD_ARP), _Z_ND, meta)
        arp = (op, spa, tpa, (sha_h << 32) | sha_l, (tha_h << 32) | tha_l, 0, 0, 0, 0, 0)
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, 0), arp, meta)
    return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, 0), _Z_ND, meta)


def _extract_ipv4(
    frame: bytes | bytearray | memoryview, in_port: int, l2: Tup, meta: Tup, off: int, n: int
) -> Tup:
    if n - off < 20:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.TRUNCATED_IPV4), _Z_ND, meta)
    vihl, tos, tlen, _ident, frag, ttl, proto, _csum, s, d = _IP4(frame, off)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.BAD_IPV4_VERSION), _Z_ND, meta)
    if ihl < 20:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.BAD_IPV4_IHL), _Z_ND, meta)
    if tlen < ihl or tlen > n - off:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.BAD_IPV4_LENGTH), _Z_ND, meta)
    fr = 0 if not frag & 0x3FFF else (3 if frag & 0x1FFF else 1)
    l4 = off + ihl
    end = off + tlen
    l3 = (s, d, 0, 0, 0, proto, tos >> 2, tos & 3, ttl, fr)
    return _l4(frame, in_port, l2, l3, meta, off, l4, end, proto, fr)


def _l4(
    frame: bytes | bytearray | memoryview,
    in_port: int,
    l2: Tup,
    l3: Tup,
    meta: Tup,
    off: int,
    l4: int,
    end: int,
    proto: int,
    fr: int,
) -> Tup:
    """Transport layer, shared by IPv4 and IPv6."""
    if fr & FRAG_LATER:
        return _key(in_port, l2, l3, _Z_L4, (off, l4, l4, 0), _Z_ND, meta)
    if proto == 6:
        if end - l4 < 20:
            return _key(in_port, l2, l3, _Z_L4, (off, l4, 0, R.TRUNCATED_TCP), _Z_ND, meta)
        sp, dp, offfl = _TCP(frame, l4)
        doff = (offfl >> 12) * 4
        if doff < 20 or doff > end - l4:
            return _key(in_port, l2, l3, _Z_L4, (off, l4, 0, R.BAD_TCP_OFFSET), _Z_ND, meta)
        return _key(
            in_port, l2, l3, (sp, dp, offfl & 0xFFF, 0, 0), (off, l4, l4 + doff, 0), _Z_ND, meta
        )
    if proto == 17:
        if end - l4 < 8:
            return _key(in_port, l2, l3, _Z_L4, (off, l4, 0, R.TRUNCATED_UDP), _Z_ND, meta)
        sp, dp = _PORTS(frame, l4)
        return _key(in_port, l2, l3, (sp, dp, 0, 0, 0), (off, l4, l4 + 8, 0), _Z_ND, meta)
    if proto == 1:
        if end - l4 < 8:
            return _key(in_port, l2, l3, _Z_L4, (off, l4, 0, R.TRUNCATED_ICMP), _Z_ND, meta)
        return _key(
            in_port, l2, l3, (0, 0, 0, frame[l4], frame[l4 + 1]), (off, l4, l4 + 8, 0), _Z_ND, meta
        )
    if proto == 58:
        if end - l4 < 4:
            return _key(in_port, l2, l3, _Z_L4, (off, l4, 0, R.TRUNCATED_ICMPV6), _Z_ND, meta)
        t, c = frame[l4], frame[l4 + 1]
        l4f = (0, 0, 0, t, c)
        if t in (ND_NS, ND_NA) and c == 0:
            try:
                nd = parse_nd(frame, l4 + 4, t, end)
            except DecodeError as e:
                return _key(in_port, l2, l3, l4f, (off, l4, 0, e.reason), _Z_ND, meta)
            ndf = (0, 0, 0, 0, 0, nd.target, nd.sll, nd.tll, nd.reserved, nd.option_type)
            return _key(in_port, l2, l3, l4f, (off, l4, l4 + 4, 0), ndf, meta)
        return _key(in_port, l2, l3, l4f, (off, l4, l4 + 4, 0), _Z_ND, meta)
    if proto == 132 and end - l4 >= 12:
        sp, dp = _PORTS(frame, l4)
        return _key(in_port, l2, l3, (sp, dp, 0, 0, 0), (off, l4, l4 + 12, 0), _Z_ND, meta)
    return _key(in_port, l2, l3, _Z_L4, (off, l4, l4, 0), _Z_ND, meta)


def _extract_ipv6(
    frame: bytes | bytearray | memoryview, in_port: int, l2: Tup, meta: Tup, off: int, n: int
) -> Tup:
    if n - off < 40:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.TRUNCATED_IPV6), _Z_ND, meta)
    vtcfl, plen, nh, hlim = _IP6(frame, off)
    if vtcfl >> 28 != 6:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.BAD_IPV6_VERSION), _Z_ND, meta)
    if plen > n - off - 40:
        return _key(in_port, l2, _Z_L3, _Z_L4, (off, 0, 0, R.BAD_IPV6_LENGTH), _Z_ND, meta)
    s = int.from_bytes(frame[off + 8 : off + 24], "big")
    d = int.from_bytes(frame[off + 24 : off + 40], "big")
    tc = (vtcfl >> 20) & 0xFF
    label = vtcfl & 0xFFFFF
    end = off + 40 + plen
    try:
        proto, l4, _seen, frag = walk_extensions(frame, off + 40, nh, end)
    except DecodeError as e:
        l3 = (0, 0, s, d, label, nh, tc >> 2, tc & 3, hlim, 0)
        return _key(in_port, l2, l3, _Z_L4, (off, 0, 0, e.reason), _Z_ND, meta)
    fr = 0 if frag is None else FRAG_ANY | (FRAG_LATER if frag.offset else 0)
    l3 = (0, 0, s, d, label, proto, tc >> 2, tc & 3, hlim, fr)
    return _l4(frame, in_port, l2, l3, meta, off, l4, end, proto, fr)


_IP4_HEAD = b"\x08\x00\x45"  # EtherType IPv4, version 4, header length 20
_TAG_HEAD = b"\x81\x00"
# layer 2 (and the tag), TOS, [total length, identification skipped], flags + fragment
# offset, TTL, protocol, [checksum skipped], addresses and transport ports or ICMP type
_SIG = struct.Struct("!14sx1s4x4s2x12s").unpack_from
_SIG_TAGGED = struct.Struct("!18sx1s4x4s2x12s").unpack_from
Signature = tuple[bytes, ...]


def signature(frame: bytes) -> Signature | None:
    """What determines `extract(frame, port)` for a plain IPv4 TCP/UDP/ICMP frame.

    None for any other frame (and for one whose lengths would make `extract`
    stop before the transport header): those take the full parse.  Left out
    are the bytes no key field depends on -- IP total length, identification
    and checksum, the transport checksum, lengths and the payload -- once the
    lengths are known to be consistent.  A tuple of byte strings cut by one
    `struct` call: cheaper to build and hash than their concatenation.
    """
    n = len(frame)
    if n < 42:
        return None
    if frame[12:15] == _IP4_HEAD:
        o = 14
        sig = _SIG(frame)
    elif frame[12:14] == _TAG_HEAD and frame[16:19] == _IP4_HEAD and n >= 46:
        o = 18
        sig = _SIG_TAGGED(frame)
    else:
        return None
    tlen = (frame[o + 2] << 8) | frame[o + 3]
    if tlen > n - o or tlen < 28:
        return None
    proto = frame[o + 9]
    if proto == 17 or proto == 1:
        return sig
    if proto == 6:
        doff = frame[o + 32] >> 4 if n > o + 32 else 0
        if doff < 5 or doff * 4 > tlen - 20:
            return None
        return (*sig, frame[o + 32 : o + 34])  # data offset and flags
    return None


def make_key(**fields: int) -> tuple[int, ...]:
    """A key from named fields (the rest zero): for traces without a frame, and tests."""
    key = [0] * KEY_LEN
    for name, value in fields.items():
        try:
            key[INDEX[name]] = value
        except KeyError:
            raise ValueError(f"unknown flow key field {name!r}") from None
    return tuple(key)


def describe(key: tuple[int, ...] | list[int]) -> dict[str, int]:
    """The non-zero matchable fields of a key, by name (offsets and error left out)."""
    return {FIELDS[i]: key[i] for i in MATCHABLE if key[i]}
