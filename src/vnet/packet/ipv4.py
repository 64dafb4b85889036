"""IPv4 (RFC 791), header checksum, fragments.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |Version|  IHL  |    DSCP   |ECN|          Total Length         |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |         Identification        |0|D|M|      Fragment Offset    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |  Time to Live |    Protocol   |         Header Checksum       |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                       Source Address                          |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                    Destination Address                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                    Options (IHL > 5)                          |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The parser trusts nothing: IHL below 5, a total length shorter than the header
or longer than the bytes that arrived, are errors.  Bytes beyond total length
(Ethernet padding) are ignored, as a receiver must.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import internet_checksum
from .errors import DecodeError, Reason

__all__ = [
    "FLAG_DF",
    "FLAG_MF",
    "IPPROTO_GRE",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "IPPROTO_SCTP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPv4",
    "build",
    "header_checksum_ok",
    "parse",
]

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
FLAG_DF = 0x4000
FLAG_MF = 0x2000

_HDR = struct.Struct("!BBHHHBBHII")


class IPv4(NamedTuple):
    ihl: int
    dscp: int
    ecn: int
    total_length: int
    ident: int
    df: bool
    mf: bool
    frag_offset: int  # in 8-byte units
    ttl: int
    proto: int
    checksum: int
    src: int
    dst: int
    options: bytes

    @property
    def header_len(self) -> int:
        return self.ihl * 4

    @property
    def is_fragment(self) -> bool:
        return self.mf or self.frag_offset != 0


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[IPv4, int]:
    avail = len(buf) - off
    if avail < 20:
        raise DecodeError(Reason.TRUNCATED_IPV4, f"{avail} bytes", off)
    vihl, tos, tlen, ident, frag, ttl, proto, csum, src, dst = _HDR.unpack_from(buf, off)
    if vihl >> 4 != 4:
        raise DecodeError(Reason.BAD_IPV4_VERSION, f"version {vihl >> 4}", off)
    ihl = vihl & 0xF
    if ihl < 5:
        raise DecodeError(Reason.BAD_IPV4_IHL, f"ihl {ihl}", off)
    hlen = ihl * 4
    if avail < hlen:
        raise DecodeError(Reason.TRUNCATED_IPV4, f"ihl {ihl} but {avail} bytes", off)
    if tlen < hlen or tlen > avail:
        raise DecodeError(Reason.BAD_IPV4_LENGTH, f"total length {tlen}, {avail} bytes", off)
    hdr = IPv4(
        ihl,
        tos >> 2,
        tos & 3,
        tlen,
        ident,
        bool(frag & FLAG_DF),
        bool(frag & FLAG_MF),
        frag & 0x1FFF,
        ttl,
        proto,
        csum,
        src,
        dst,
        bytes(buf[off + 20 : off + hlen]),
    )
    return hdr, off + hlen


def header_checksum_ok(buf: bytes | bytearray | memoryview, off: int = 0) -> bool:
    hlen = (buf[off] & 0xF) * 4
    return internet_checksum(buf[off : off + hlen]) == 0


def build(
    src: int,
    dst: int,
    proto: int,
    payload: bytes = b"",
    *,
    ttl: int = 64,
    dscp: int = 0,
    ecn: int = 0,
    ident: int = 0,
    df: bool = False,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
) -> bytes:
    """Header (with a valid checksum) followed by payload; options are padded to 4 bytes."""
    if len(options) % 4:
        options = options + b"\x00" * (4 - len(options) % 4)
    hlen = 20 + len(options)
    frag = (FLAG_DF if df else 0) | (FLAG_MF if mf else 0) | (frag_offset & 0x1FFF)
    hdr = bytearray(
        _HDR.pack(
            0x40 | (hlen // 4),
            (dscp << 2) | ecn,
            hlen + len(payload),
            ident,
            frag,
            ttl,
            proto,
            0,
            src,
            dst,
        )
    )
    hdr += options
    struct.pack_into("!H", hdr, 10, internet_checksum(hdr))
    return bytes(hdr) + payload
