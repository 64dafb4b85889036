"""IPv6 (RFC 8200) with the extension-header walk.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |Version| Traffic Class |           Flow Label                  |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |         Payload Length        |  Next Header  |   Hop Limit   |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                  Source Address (128)                         |
   |                  Destination Address (128)                    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Extension headers walked: hop-by-hop (0), routing (43), fragment (44),
destination options (60), each `Next Header | Hdr Ext Len (8-octet units,
excluding the first 8) | ...`; the fragment header is a fixed 8 bytes:

   | Next Header |  Reserved  |  Fragment Offset (13) |Res|M|  Identification (32)

The walk is bounded (`MAX_EXT_HEADERS`) so a chain crafted to loop costs a
constant amount of work.  A later fragment (offset != 0) carries no upper-layer
header, so the walk stops there and the L4 fields stay zero.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, Reason

__all__ = [
    "EXT_DSTOPTS",
    "EXT_FRAGMENT",
    "EXT_HOPOPTS",
    "EXT_ROUTING",
    "MAX_EXT_HEADERS",
    "ExtHeader",
    "Fragment",
    "IPv6",
    "build",
    "build_ext",
    "build_fragment",
    "parse",
    "walk_extensions",
]

EXT_HOPOPTS = 0
EXT_ROUTING = 43
EXT_FRAGMENT = 44
EXT_DSTOPTS = 60
_EXT = frozenset((EXT_HOPOPTS, EXT_ROUTING, EXT_FRAGMENT, EXT_DSTOPTS))
MAX_EXT_HEADERS = 8

_HDR = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BBHI")


class IPv6(NamedTuple):
    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    src: int
    dst: int

    @property
    def dscp(self) -> int:
        return self.traffic_class >> 2

    @property
    def ecn(self) -> int:
        return self.traffic_class & 3


class ExtHeader(NamedTuple):
    kind: int
    offset: int
    length: int


class Fragment(NamedTuple):
    offset: int  # 8-byte units
    more: bool
    ident: int


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[IPv6, int]:
    avail = len(buf) - off
    if avail < 40:
        raise DecodeError(Reason.TRUNCATED_IPV6, f"{avail} bytes", off)
    vtcfl, plen, nh, hlim, src, dst = _HDR.unpack_from(buf, off)
    if vtcfl >> 28 != 6:
        raise DecodeError(Reason.BAD_IPV6_VERSION, f"version {vtcfl >> 28}", off)
    if plen > avail - 40:
        raise DecodeError(Reason.BAD_IPV6_LENGTH, f"payload length {plen}, {avail - 40} bytes", off)
    hdr = IPv6(
        (vtcfl >> 20) & 0xFF,
        vtcfl & 0xFFFFF,
        plen,
        nh,
        hlim,
        int.from_bytes(src, "big"),
        int.from_bytes(dst, "big"),
    )
    return hdr, off + 40


def walk_extensions(
    buf: bytes | bytearray | memoryview, off: int, nh: int, end: int
) -> tuple[int, int, list[ExtHeader], Fragment | None]:
    """Follow extension headers from `off` (first one of type `nh`) to the upper layer.

    Returns (upper-layer protocol, its offset, headers seen, fragment info).
    """
    seen: list[ExtHeader] = []
    frag: Fragment | None = None
    while nh in _EXT:
        if len(seen) >= MAX_EXT_HEADERS:
            raise DecodeError(Reason.TOO_MANY_IPV6_EXT, f"more than {MAX_EXT_HEADERS}", off)
        if end - off < 8:
            raise DecodeError(Reason.TRUNCATED_IPV6_EXT, f"header {nh}", off)
        if nh == EXT_FRAGMENT:
            nxt, _res, offm, ident = _FRAG.unpack_from(buf, off)
            frag = Fragment(offm >> 3, bool(offm & 1), ident)
            seen.append(ExtHeader(nh, off, 8))
            off += 8
            nh = nxt
            if frag.offset:
                break
            continue
        nxt = buf[off]
        length = (buf[off + 1] + 1) * 8
        if end - off < length:
            raise DecodeError(Reason.TRUNCATED_IPV6_EXT, f"header {nh} length {length}", off)
        seen.append(ExtHeader(nh, off, length))
        off += length
        nh = nxt
    return nh, off, seen, frag


def build(
    src: int,
    dst: int,
    next_header: int,
    payload: bytes = b"",
    *,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    vtcfl = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return (
        _HDR.pack(
            vtcfl,
            len(payload),
            next_header,
            hop_limit,
            src.to_bytes(16, "big"),
            dst.to_bytes(16, "big"),
        )
        + payload
    )


def build_ext(next_header: int, body: bytes = b"") -> bytes:
    """A hop-by-hop, routing or destination-options header, padded with PadN."""
    total = 2 + len(body)
    pad = (-total) % 8
    if pad == 1:
        padding = b"\x00"  # Pad1
    elif pad:
        padding = bytes((1, pad - 2)) + b"\x00" * (pad - 2)  # PadN
    else:
        padding = b""
    data = body + padding
    return bytes((next_header, (2 + len(data)) // 8 - 1)) + data


def build_fragment(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return _FRAG.pack(next_header, 0, (offset << 3) | int(more), ident)
