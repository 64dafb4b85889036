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

Trade-off: a 62-slot tuple is built even for a frame that uses a dozen fields.
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
    "FIELDS",
    "INDEX",
    "KEY_LEN",
    "PACKET_FIELDS",
    "TunnelInfo",
    "describe",
    "extract",
    "make_key",
]

FIELDS: tuple[str, ...] = (
    # 0..10 pipeline and tunnel metadata
    "in_port",
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
    # 11..17 layer 2
    "eth_dst",
    "eth_src",
    "eth_type",
    "vlan_vid",
    "vlan_pcp",
    "cvlan_vid",
    "cvlan_pcp",
    # 18..27 layer 3
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
    # 28..32 layer 4
    "tp_src",
    "tp_dst",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
    # 33..40 ARP and neighbour discovery
    "arp_op",
    "arp_spa",
    "arp_tpa",
    "arp_sha",
    "arp_tha",
    "nd_target",
    "nd_sll",
    "nd_tll",
    # 41..59 connection tracking and registers
    "ct_state",
    "ct_zone",
    "ct_mark",
    *(f"reg{i}" for i in range(16)),
    # 60..63 where layers start, and why parsing stopped (not matchable)
    "l3_ofs",
    "l4_ofs",
    "l7_ofs",
    "parse_error",
)
INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}
KEY_LEN = len(FIELDS)

IN_PORT, METADATA, TUN_ID, TUN_SRC, TUN_DST, TUN_IPV6_SRC, TUN_IPV6_DST = range(7)
TUN_METADATA0 = 7
ETH_DST, ETH_SRC, ETH_TYPE, VLAN_VID, VLAN_PCP, CVLAN_VID, CVLAN_PCP = range(11, 18)
IPV4_SRC, IPV4_DST, IPV6_SRC, IPV6_DST, IPV6_LABEL = range(18, 23)
IP_PROTO, IP_DSCP, IP_ECN, IP_TTL, IP_FRAG = range(23, 28)
TP_SRC, TP_DST, TCP_FLAGS, ICMP_TYPE, ICMP_CODE = range(28, 33)
ARP_OP, ARP_SPA, ARP_TPA, ARP_SHA, ARP_THA, ND_TARGET, ND_SLL, ND_TLL = range(33, 41)
CT_STATE, CT_ZONE, CT_MARK = range(41, 44)
REG0 = 44
L3_OFS, L4_OFS, L7_OFS, PARSE_ERROR = range(60, 64)
CT_REGS = slice(CT_STATE, L3_OFS)  # the 19 slots carried across recirculation
PACKET_FIELDS = frozenset(range(ETH_DST, CT_STATE))  # slots that live in the frame's bytes

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


_NO_TUN = (0,) * 9
_ZERO_CT_REGS = (0,) * 19
_Z_L2 = (0,) * 7
_Z_L3 = (0,) * 10
_Z_L4 = (0,) * 5
_Z_ARPND = (0,) * 8
_Z_L3_ON = _Z_L3 + _Z_L4 + _Z_ARPND  # everything from L3 to the end of ND
_Z_L4_ON = _Z_L4 + _Z_ARPND
_Z10 = (0,) * 10
_Z_ND_CT = _Z_ARPND + _ZERO_CT_REGS

_ETH = struct.Struct("!HIHIH").unpack_from
_TAG = struct.Struct("!HH").unpack_from
_IP4 = struct.Struct("!BBHHHBBHII").unpack_from
_IP6 = struct.Struct("!IHBB").unpack_from
_PORTS = struct.Struct("!HH").unpack_from
_TCP = struct.Struct("!HH8xH").unpack_from
_ARP = struct.Struct("!HHBBHHIIHII").unpack_from
_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))

R = Reason


def extract(
    frame: bytes | bytearray | memoryview,
    in_port: int = 0,
    tunnel: TunnelInfo | None = None,
    ct_regs: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    """Parse `frame` once into a flow key.  Never raises for any bytes.

    `ct_regs` (19 values: ct_state, ct_zone, ct_mark, reg0..15) is given when a
    packet re-enters the pipeline after recirculation.
    """
    head = (in_port,) + (_Z10 if tunnel is None else (0, *tunnel.key_fields()))
    ctr: tuple[int, ...]
    ndt: tuple[int, ...]
    if ct_regs is None:
        ctr = _ZERO_CT_REGS
        ndt = _Z_ND_CT  # ARP/ND zeros and ct/regs zeros, concatenated once at import
    else:
        ctr = ct_regs
        ndt = _Z_ARPND + ct_regs
    n = len(frame)
    if n < 14:
        return head + _Z_L2 + _Z_L3_ON + ctr + (0, 0, 0, R.TRUNCATED_ETH)
    dh, dl, sh, sl, et = _ETH(frame, 0)
    dst = (dh << 32) | dl
    src = (sh << 32) | sl
    off = 14
    vid = pcp = cvid = cpcp = 0
    if et in _TPIDS:
        if n - off < 4:
            return (
                head + (dst, src, et, 0, 0, 0, 0) + _Z_L3_ON + ctr + (off, 0, 0, R.TRUNCATED_VLAN)
            )
        tci, et = _TAG(frame, off)
        vid = (tci & 0xFFF) | VID_PRESENT
        pcp = tci >> 13
        off += 4
        if et in _TPIDS:
            if n - off < 4:
                l2 = (dst, src, et, vid, pcp, 0, 0)
                return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.TRUNCATED_VLAN)
            tci, et = _TAG(frame, off)
            cvid = (tci & 0xFFF) | VID_PRESENT
            cpcp = tci >> 13
            off += 4
            if et in _TPIDS:
                l2 = (dst, src, et, vid, pcp, cvid, cpcp)
                return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.TOO_MANY_VLANS)
    l2 = (dst, src, et, vid, pcp, cvid, cpcp)

    if et == 0x0800:
        if n - off < 20:
            return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.TRUNCATED_IPV4)
        vihl, tos, tlen, _ident, frag, ttl, proto, _csum, s, d = _IP4(frame, off)
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4:
            return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.BAD_IPV4_VERSION)
        if ihl < 20:
            return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.BAD_IPV4_IHL)
        if tlen < ihl or tlen > n - off:
            return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.BAD_IPV4_LENGTH)
        fr = 0 if not frag & 0x3FFF else (3 if frag & 0x1FFF else 1)
        l4 = off + ihl
        end = off + tlen
        l3 = (s, d, 0, 0, 0, proto, tos >> 2, tos & 3, ttl, fr)
        if fr & FRAG_LATER:
            return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, l4, 0)
        if proto == 6:
            if end - l4 < 20:
                return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.TRUNCATED_TCP)
            sp, dp, offfl = _TCP(frame, l4)
            doff = (offfl >> 12) * 4
            if doff < 20 or doff > end - l4:
                return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.BAD_TCP_OFFSET)
            # fmt: off
            return head + (dst, src, et, vid, pcp, cvid, cpcp, s, d, 0, 0, 0, proto, tos >> 2,
                           tos & 3, ttl, fr, sp, dp, offfl & 0xFFF, 0, 0) + ndt + (off, l4, l4 + doff, 0)
            # fmt: on
        if proto == 17:
            if end - l4 < 8:
                return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.TRUNCATED_UDP)
            sp, dp = _PORTS(frame, l4)
            # fmt: off
            return head + (dst, src, et, vid, pcp, cvid, cpcp, s, d, 0, 0, 0, proto, tos >> 2,
                           tos & 3, ttl, fr, sp, dp, 0, 0, 0) + ndt + (off, l4, l4 + 8, 0)
            # fmt: on
        if proto == 1:
            if end - l4 < 8:
                return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.TRUNCATED_ICMP)
            return (
                head
                + l2
                + l3
                + (0, 0, 0, frame[l4], frame[l4 + 1])
                + _Z_ARPND
                + ctr
                + (off, l4, l4 + 8, 0)
            )
        if proto == 132 and end - l4 >= 12:
            sp, dp = _PORTS(frame, l4)
            return head + l2 + l3 + (sp, dp, 0, 0, 0) + _Z_ARPND + ctr + (off, l4, l4 + 12, 0)
        return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, l4, 0)

    if et == 0x86DD:
        return _extract_ipv6(frame, head, l2, ctr, off, n)

    if et == 0x0806:
        if n - off < 28:
            return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.TRUNCATED_ARP)
        ht, pt, hl, pl, op, sha_h, sha_l, spa, tha_h, tha_l, tpa = _ARP(frame, off)
        if ht != 1 or pt != 0x0800 or hl != 6 or pl != 4:
            return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.BAD_ARP)
        arp = (op, spa, tpa, (sha_h << 32) | sha_l, (tha_h << 32) | tha_l, 0, 0, 0)
        return head + l2 + _Z_L3 + _Z_L4 + arp + ctr + (off, 0, 0, 0)

    return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, 0)


def _extract_ipv6(
    frame: bytes | bytearray | memoryview,
    head: tuple[int, ...],
    l2: tuple[int, ...],
    ctr: tuple[int, ...],
    off: int,
    n: int,
) -> tuple[int, ...]:
    if n - off < 40:
        return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.TRUNCATED_IPV6)
    vtcfl, plen, nh, hlim = _IP6(frame, off)
    if vtcfl >> 28 != 6:
        return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.BAD_IPV6_VERSION)
    if plen > n - off - 40:
        return head + l2 + _Z_L3_ON + ctr + (off, 0, 0, R.BAD_IPV6_LENGTH)
    s = int.from_bytes(frame[off + 8 : off + 24], "big")
    d = int.from_bytes(frame[off + 24 : off + 40], "big")
    tc = (vtcfl >> 20) & 0xFF
    label = vtcfl & 0xFFFFF
    end = off + 40 + plen
    l4 = off + 40
    fr = 0
    try:
        proto, l4, _seen, frag = walk_extensions(frame, l4, nh, end)
    except DecodeError as e:
        l3 = (0, 0, s, d, label, nh, tc >> 2, tc & 3, hlim, 0)
        return head + l2 + l3 + _Z_L4_ON + ctr + (off, 0, 0, e.reason)
    if frag is not None:
        fr = FRAG_ANY | (FRAG_LATER if frag.offset else 0)
    l3 = (0, 0, s, d, label, proto, tc >> 2, tc & 3, hlim, fr)
    if fr & FRAG_LATER:
        return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, l4, 0)
    if proto == 6:
        if end - l4 < 20:
            return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.TRUNCATED_TCP)
        sp, dp, offfl = _TCP(frame, l4)
        doff = (offfl >> 12) * 4
        if doff < 20 or doff > end - l4:
            return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.BAD_TCP_OFFSET)
        return (
            head
            + l2
            + l3
            + (sp, dp, offfl & 0xFFF, 0, 0)
            + _Z_ARPND
            + ctr
            + (off, l4, l4 + doff, 0)
        )
    if proto == 17:
        if end - l4 < 8:
            return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.TRUNCATED_UDP)
        sp, dp = _PORTS(frame, l4)
        return head + l2 + l3 + (sp, dp, 0, 0, 0) + _Z_ARPND + ctr + (off, l4, l4 + 8, 0)
    if proto == 58:
        if end - l4 < 4:
            return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, 0, R.TRUNCATED_ICMPV6)
        t, c = frame[l4], frame[l4 + 1]
        l4f = (0, 0, 0, t, c)
        if t in (ND_NS, ND_NA) and c == 0:
            try:
                nd = parse_nd(frame, l4 + 4, t, end)
            except DecodeError as e:
                return head + l2 + l3 + l4f + _Z_ARPND + ctr + (off, l4, 0, e.reason)
            ndf = (0, 0, 0, 0, 0, nd.target, nd.sll, nd.tll)
            return head + l2 + l3 + l4f + ndf + ctr + (off, l4, l4 + 4, 0)
        return head + l2 + l3 + l4f + _Z_ARPND + ctr + (off, l4, l4 + 4, 0)
    if proto == 132 and end - l4 >= 12:
        sp, dp = _PORTS(frame, l4)
        return head + l2 + l3 + (sp, dp, 0, 0, 0) + _Z_ARPND + ctr + (off, l4, l4 + 12, 0)
    return head + l2 + l3 + _Z_L4_ON + ctr + (off, l4, l4, 0)


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
    return {FIELDS[i]: v for i, v in enumerate(key[:L3_OFS]) if v}
