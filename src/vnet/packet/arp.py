"""ARP for IPv4 over Ethernet (RFC 826).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |      HTYPE (1)                |      PTYPE (0x0800)           |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |  HLEN (6)     |  PLEN (4)     |      Operation (1 req, 2 rep) |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |  Sender hardware address (6) | Sender protocol address (4)    |
   |  Target hardware address (6) | Target protocol address (4)    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Only Ethernet/IPv4 ARP is decoded into fields; other hardware or protocol
types are reported as `bad_arp` (the flow key then stops at layer 2, as Open
vSwitch does).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, Reason

__all__ = ["ARP_LEN", "ARP_REPLY", "ARP_REQUEST", "Arp", "build", "parse"]

ARP_LEN = 28
ARP_REQUEST = 1
ARP_REPLY = 2
_ARP = struct.Struct("!HHBBH6sI6sI")


class Arp(NamedTuple):
    op: int
    sha: int
    spa: int
    tha: int
    tpa: int


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Arp, int]:
    if len(buf) - off < ARP_LEN:
        raise DecodeError(Reason.TRUNCATED_ARP, f"{len(buf) - off} bytes", off)
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, off)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        raise DecodeError(Reason.BAD_ARP, f"htype={htype} ptype={ptype:#x}", off)
    return Arp(op, int.from_bytes(sha, "big"), spa, int.from_bytes(tha, "big"), tpa), off + ARP_LEN


def build(op: int, sha: int, spa: int, tha: int, tpa: int) -> bytes:
    return _ARP.pack(1, 0x0800, 6, 4, op, sha.to_bytes(6, "big"), spa, tha.to_bytes(6, "big"), tpa)
