"""ICMP for IPv4 (RFC 792).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |     Type      |     Code      |          Checksum             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |     rest of header (echo: identifier | sequence; type 3 code 4:|
   |     unused | next-hop MTU, RFC 1191)                           |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The checksum covers the ICMP message only (no pseudo-header).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import internet_checksum
from .errors import DecodeError, Reason

__all__ = [
    "CODE_FRAG_NEEDED",
    "TYPE_DEST_UNREACH",
    "TYPE_ECHO_REPLY",
    "TYPE_ECHO_REQUEST",
    "Icmp",
    "build",
    "build_echo",
    "parse",
]

TYPE_ECHO_REPLY = 0
TYPE_DEST_UNREACH = 3
TYPE_ECHO_REQUEST = 8
CODE_FRAG_NEEDED = 4

_HDR = struct.Struct("!BBH4s")


class Icmp(NamedTuple):
    type: int
    code: int
    checksum: int
    rest: bytes

    @property
    def echo_id(self) -> int:
        return int.from_bytes(self.rest[:2], "big")

    @property
    def echo_seq(self) -> int:
        return int.from_bytes(self.rest[2:], "big")


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Icmp, int]:
    if len(buf) - off < 8:
        raise DecodeError(Reason.TRUNCATED_ICMP, f"{len(buf) - off} bytes", off)
    t, c, csum, rest = _HDR.unpack_from(buf, off)
    return Icmp(t, c, csum, rest), off + 8


def build(type_: int, code: int, rest: bytes = b"\x00" * 4, payload: bytes = b"") -> bytes:
    msg = bytearray(_HDR.pack(type_, code, 0, rest[:4].ljust(4, b"\x00")))
    msg += payload
    struct.pack_into("!H", msg, 2, internet_checksum(msg))
    return bytes(msg)


def build_echo(ident: int, seq: int, payload: bytes = b"", reply: bool = False) -> bytes:
    t = TYPE_ECHO_REPLY if reply else TYPE_ECHO_REQUEST
    return build(t, 0, struct.pack("!HH", ident, seq), payload)
