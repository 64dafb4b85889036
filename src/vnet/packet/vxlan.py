"""VXLAN (RFC 7348), over UDP destination port 4789.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |R|R|R|R|I|R|R|R|            Reserved                           |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                VXLAN Network Identifier (VNI) |   Reserved    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The I flag must be set for the VNI to be valid; a header without it is still
decoded (the receiver decides), with `vni_valid` False.  The inner frame is
Ethernet.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, Reason

__all__ = ["VXLAN_LEN", "VXLAN_PORT", "Vxlan", "build", "parse"]

VXLAN_PORT = 4789
VXLAN_LEN = 8
_FLAG_I = 0x08
_HDR = struct.Struct("!II")


class Vxlan(NamedTuple):
    flags: int
    vni: int

    @property
    def vni_valid(self) -> bool:
        return bool(self.flags & _FLAG_I)


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Vxlan, int]:
    if len(buf) - off < VXLAN_LEN:
        raise DecodeError(Reason.TRUNCATED_VXLAN, f"{len(buf) - off} bytes", off)
    w0, w1 = _HDR.unpack_from(buf, off)
    return Vxlan(w0 >> 24, w1 >> 8), off + VXLAN_LEN


def build(vni: int, inner: bytes = b"") -> bytes:
    if not 0 <= vni < 1 << 24:
        raise ValueError(f"VNI {vni} out of range 0..16777215")
    return _HDR.pack(_FLAG_I << 24, vni << 8) + inner
