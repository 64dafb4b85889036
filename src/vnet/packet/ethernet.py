"""Ethernet II (IEEE 802.3 / RFC 894) with 802.1Q and 802.1ad (QinQ) tags.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                    Destination MAC (48)                       |
   +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                               |     Source MAC (48)           |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
   |                                                               |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |  TPID 0x8100 / 0x88a8 (opt.)  | PCP |D|        VID            |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |           EtherType           |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

A tag is 4 bytes inserted before the EtherType: TPID then TCI (PCP 3 bits,
DEI 1 bit, VID 12 bits).  0x88a8 is the 802.1ad service tag (outer in QinQ),
0x8100 the customer tag; the legacy 0x9100 is accepted as a service tag too.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, Reason

__all__ = [
    "ETH_HEADER_LEN",
    "ETH_TYPE_8021AD",
    "ETH_TYPE_8021Q",
    "ETH_TYPE_ARP",
    "ETH_TYPE_IPV4",
    "ETH_TYPE_IPV6",
    "ETH_TYPE_QINQ_LEGACY",
    "ETH_TYPE_TEB",
    "VLAN_TPIDS",
    "Ethernet",
    "VlanTag",
    "build",
    "parse",
    "parse_tag",
    "pop_tag",
    "push_tag",
]

ETH_HEADER_LEN = 14
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_8021Q = 0x8100
ETH_TYPE_8021AD = 0x88A8
ETH_TYPE_QINQ_LEGACY = 0x9100
ETH_TYPE_TEB = 0x6558  # transparent Ethernet bridging (NVGRE, Geneve payload)
VLAN_TPIDS = frozenset((ETH_TYPE_8021Q, ETH_TYPE_8021AD, ETH_TYPE_QINQ_LEGACY))

_HDR = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")


class Ethernet(NamedTuple):
    dst: int
    src: int
    ethertype: int  # the first type field: a TPID when the frame is tagged


class VlanTag(NamedTuple):
    tpid: int
    pcp: int
    dei: int
    vid: int

    @property
    def tci(self) -> int:
        return (self.pcp << 13) | (self.dei << 12) | self.vid


def parse(buf: bytes | bytearray | memoryview, off: int = 0) -> tuple[Ethernet, int]:
    if len(buf) - off < ETH_HEADER_LEN:
        raise DecodeError(Reason.TRUNCATED_ETH, f"{len(buf) - off} bytes", off)
    dst, src, et = _HDR.unpack_from(buf, off)
    return Ethernet(int.from_bytes(dst, "big"), int.from_bytes(src, "big"), et), off + 14


def parse_tag(buf: bytes | bytearray | memoryview, off: int, tpid: int) -> tuple[VlanTag, int, int]:
    """Parse the TCI at `off` (after a TPID); returns (tag, next ethertype, next offset)."""
    if len(buf) - off < 4:
        raise DecodeError(Reason.TRUNCATED_VLAN, "", off)
    tci, nxt = _TAG.unpack_from(buf, off)
    return VlanTag(tpid, tci >> 13, (tci >> 12) & 1, tci & 0xFFF), nxt, off + 4


def header_len(frame: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(length of the Ethernet header with its VLAN tags, the EtherType after them)."""
    off, et = 14, int.from_bytes(frame[12:14], "big")
    while et in (0x8100, 0x88A8, 0x9100) and len(frame) >= off + 4:
        et = int.from_bytes(frame[off + 2 : off + 4], "big")
        off += 4
    return off, et


def build(
    dst: int,
    src: int,
    ethertype: int,
    payload: bytes = b"",
    vlans: tuple[VlanTag, ...] | list[VlanTag] = (),
) -> bytes:
    """A frame: outermost tag first in `vlans`."""
    parts = [dst.to_bytes(6, "big"), src.to_bytes(6, "big")]
    for tag in vlans:
        parts.append(_TAG.pack(tag.tpid, tag.tci))
    parts.append(ethertype.to_bytes(2, "big"))
    parts.append(payload)
    return b"".join(parts)


def push_tag(frame: bytes | bytearray, tpid: int, tci: int) -> bytearray:
    """Insert a tag as the outermost one (right after the source MAC)."""
    out = bytearray(frame[:12])
    out += _TAG.pack(tpid, tci)
    out += frame[12:]
    return out


def pop_tag(frame: bytes | bytearray) -> bytearray:
    """Remove the outermost tag; a frame without one is returned unchanged."""
    if len(frame) >= 18 and int.from_bytes(frame[12:14], "big") in VLAN_TPIDS:
        return bytearray(frame[:12]) + frame[16:]
    return bytearray(frame)
