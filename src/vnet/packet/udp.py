"""UDP header (RFC 768).

    0      7 8     15 16    23 24    31
   +--------+--------+--------+--------+
   |   Source Port   | Destination Port|
   +--------+--------+--------+--------+
   |     Length      |    Checksum     |
   +--------+--------+--------+--------+

Checksum 0 means "none" over IPv4; over IPv6 a computed 0 is sent as 0xffff
(RFC 8200 §8.1).  Tunnels may send 0 over IPv6 per RFC 6935, which is the
encapsulation's choice, not this module's.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import internet_checksum, pseudo_header_v4, pseudo_header_v6
from .errors import DecodeError, Reason

__all__ = ["UDP_LEN", "Udp", "build", "parse"]

UDP_LEN = 8
_HDR = struct.Struct("!HHHH")


class Udp(NamedTuple):
    src: int
    dst: int
    length: int
    checksum: int


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Udp, int]:
    avail = len(buf) - off
    if avail < 8:
        raise DecodeError(Reason.TRUNCATED_UDP, f"{avail} bytes", off)
    sp, dp, length, csum = _HDR.unpack_from(buf, off)
    if length < 8 or length > avail:
        raise DecodeError(Reason.BAD_UDP_LENGTH, f"length {length}, {avail} bytes", off)
    return Udp(sp, dp, length, csum), off + 8


def build(
    src_port: int,
    dst_port: int,
    payload: bytes = b"",
    *,
    ip_src: int,
    ip_dst: int,
    ipv6: bool = False,
    checksum: bool = True,
) -> bytes:
    length = 8 + len(payload)
    dgram = bytearray(_HDR.pack(src_port, dst_port, length, 0))
    dgram += payload
    if checksum:
        if ipv6:
            ph = pseudo_header_v6(ip_src, ip_dst, 17, length)
        else:
            ph = pseudo_header_v4(ip_src, ip_dst, 17, length)
        csum = internet_checksum(ph, dgram) or 0xFFFF
        struct.pack_into("!H", dgram, 6, csum)
    return bytes(dgram)
