"""ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |     Type      |     Code      |          Checksum             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                       Message body                            |

ND messages after the 4-byte header:
  RS (133): reserved(4)                                   options
  RA (134): hop limit | M O res | lifetime(2) | reachable(4) | retrans(4) options
  NS (135): reserved(4) | target(16)                      options
  NA (136): R S O reserved(29 bits) | target(16)          options
Options: type(1) | length(1, in 8-octet units, never 0) | data.
  1 = source link-layer address, 2 = target link-layer address.

The checksum covers an IPv6 pseudo-header (src, dst, length, next header 58).
An option of length 0 is invalid (RFC 4861 §4.6) and stops the parse: it would
otherwise loop forever.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import internet_checksum, pseudo_header_v6
from .errors import DecodeError, Reason

__all__ = [
    "ND_NA",
    "ND_NS",
    "ND_RA",
    "ND_RS",
    "OPT_SLL",
    "OPT_TLL",
    "TYPE_ECHO_REPLY",
    "TYPE_ECHO_REQUEST",
    "TYPE_PACKET_TOO_BIG",
    "Icmpv6",
    "NeighborDiscovery",
    "build",
    "build_na",
    "build_ns",
    "build_ra",
    "build_rs",
    "parse",
    "parse_nd",
]

TYPE_PACKET_TOO_BIG = 2
TYPE_ECHO_REQUEST = 128
TYPE_ECHO_REPLY = 129
ND_RS = 133
ND_RA = 134
ND_NS = 135
ND_NA = 136
OPT_SLL = 1
OPT_TLL = 2
NA_FLAG_ROUTER = 0x80000000
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000

_HDR = struct.Struct("!BBH")
_BODY_LEN = {ND_RS: 4, ND_RA: 12, ND_NS: 20, ND_NA: 20}


class Icmpv6(NamedTuple):
    type: int
    code: int
    checksum: int


class NeighborDiscovery(NamedTuple):
    type: int
    target: int  # NS/NA target, 0 for RS/RA
    flags: int  # NA: R/S/O bits (top 3 bits of the first word); RA: M/O byte
    sll: int  # source link-layer address option, 0 when absent
    tll: int  # target link-layer address option, 0 when absent
    hop_limit: int = 0  # RA only
    router_lifetime: int = 0  # RA only
    reserved: int = 0  # NS/NA: the whole first word of the body (NA flags included)
    option_type: int = 0  # the type of the first link-layer address option, 0 if none


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Icmpv6, int]:
    if len(buf) - off < 4:
        raise DecodeError(Reason.TRUNCATED_ICMPV6, f"{len(buf) - off} bytes", off)
    t, c, csum = _HDR.unpack_from(buf, off)
    return Icmpv6(t, c, csum), off + 4


def parse_nd(
    buf: bytes | bytearray | memoryview, off: int, type_: int, end: int
) -> NeighborDiscovery:
    """Parse an ND body starting at `off` (just after type/code/checksum)."""
    need = _BODY_LEN[type_]
    if end - off < need:
        raise DecodeError(Reason.TRUNCATED_ICMPV6, f"nd type {type_}", off)
    target = flags = hop_limit = lifetime = reserved = 0
    if type_ in (ND_NS, ND_NA):
        reserved = int.from_bytes(buf[off : off + 4], "big")
        flags = reserved & 0xE0000000
        target = int.from_bytes(buf[off + 4 : off + 20], "big")
    elif type_ == ND_RA:
        hop_limit = buf[off]
        flags = buf[off + 1]
        lifetime = int.from_bytes(buf[off + 2 : off + 4], "big")
    sll = tll = first = 0
    o = off + need
    while end - o >= 2:
        otype, olen = buf[o], buf[o + 1] * 8
        if olen == 0 or end - o < olen:
            raise DecodeError(Reason.BAD_ND_OPTION, f"option {otype} length {olen}", o)
        if otype == OPT_SLL and olen >= 8:
            sll = int.from_bytes(buf[o + 2 : o + 8], "big")
            first = first or otype
        elif otype == OPT_TLL and olen >= 8:
            tll = int.from_bytes(buf[o + 2 : o + 8], "big")
            first = first or otype
        o += olen
    return NeighborDiscovery(type_, target, flags, sll, tll, hop_limit, lifetime, reserved, first)


def build(src: int, dst: int, type_: int, code: int, body: bytes = b"") -> bytes:
    """An ICMPv6 message with its checksum over the IPv6 pseudo-header."""
    msg = bytearray(_HDR.pack(type_, code, 0))
    msg += body
    csum = internet_checksum(pseudo_header_v6(src, dst, 58, len(msg)), msg)
    struct.pack_into("!H", msg, 2, csum)
    return bytes(msg)


def _lla(kind: int, mac: int) -> bytes:
    return bytes((kind, 1)) + mac.to_bytes(6, "big")


def build_ns(src: int, dst: int, target: int, sll: int | None = None) -> bytes:
    body = b"\x00" * 4 + target.to_bytes(16, "big")
    if sll is not None:
        body += _lla(OPT_SLL, sll)
    return build(src, dst, ND_NS, 0, body)


def build_na(
    src: int,
    dst: int,
    target: int,
    tll: int | None = None,
    *,
    router: bool = False,
    solicited: bool = True,
    override: bool = True,
) -> bytes:
    flags = (
        (NA_FLAG_ROUTER if router else 0)
        | (NA_FLAG_SOLICITED if solicited else 0)
        | (NA_FLAG_OVERRIDE if override else 0)
    )
    body = flags.to_bytes(4, "big") + target.to_bytes(16, "big")
    if tll is not None:
        body += _lla(OPT_TLL, tll)
    return build(src, dst, ND_NA, 0, body)


def build_rs(src: int, dst: int, sll: int | None = None) -> bytes:
    body = b"\x00" * 4
    if sll is not None:
        body += _lla(OPT_SLL, sll)
    return build(src, dst, ND_RS, 0, body)


def build_ra(
    src: int, dst: int, *, hop_limit: int = 64, lifetime: int = 1800, sll: int | None = None
) -> bytes:
    body = struct.pack("!BBHII", hop_limit, 0, lifetime, 0, 0)
    if sll is not None:
        body += _lla(OPT_SLL, sll)
    return build(src, dst, ND_RA, 0, body)
