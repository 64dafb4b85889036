"""GRE (RFC 2784, key and sequence from RFC 2890) and NVGRE (RFC 7637).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |C| |K|S| Reserved0       | Ver |         Protocol Type         |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |      Checksum (optional)      |       Reserved1 (Optional)    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                         Key (optional)                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                 Sequence Number (Optional)                    |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

NVGRE is GRE with K set, protocol 0x6558 (transparent Ethernet bridging) and
key = Virtual Subnet ID (24 bits) << 8 | FlowID (8 bits).  GRE rides directly
on IP protocol 47.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import internet_checksum
from .errors import DecodeError, Reason

__all__ = ["GRE_PROTO_TEB", "Gre", "build", "build_nvgre", "parse"]

GRE_PROTO_TEB = 0x6558
_C, _K, _S = 0x8000, 0x2000, 0x1000
_HDR = struct.Struct("!HH")


class Gre(NamedTuple):
    checksum_present: bool
    key_present: bool
    seq_present: bool
    protocol: int
    checksum: int
    key: int
    seq: int

    @property
    def vsid(self) -> int:
        return self.key >> 8

    @property
    def flow_id(self) -> int:
        return self.key & 0xFF


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Gre, int]:
    if len(buf) - off < 4:
        raise DecodeError(Reason.TRUNCATED_GRE, f"{len(buf) - off} bytes", off)
    flags, proto = _HDR.unpack_from(buf, off)
    if flags & 0x7:
        raise DecodeError(Reason.BAD_GRE_VERSION, f"version {flags & 7}", off)
    need = 4 + (4 if flags & _C else 0) + (4 if flags & _K else 0) + (4 if flags & _S else 0)
    if len(buf) - off < need:
        raise DecodeError(Reason.TRUNCATED_GRE, f"needs {need} bytes", off)
    o = off + 4
    csum = key = seq = 0
    if flags & _C:
        csum = int.from_bytes(buf[o : o + 2], "big")
        o += 4
    if flags & _K:
        key = int.from_bytes(buf[o : o + 4], "big")
        o += 4
    if flags & _S:
        seq = int.from_bytes(buf[o : o + 4], "big")
        o += 4
    return Gre(bool(flags & _C), bool(flags & _K), bool(flags & _S), proto, csum, key, seq), o


def build(
    protocol: int,
    inner: bytes = b"",
    *,
    key: int | None = None,
    seq: int | None = None,
    checksum: bool = False,
) -> bytes:
    flags = (
        (_C if checksum else 0) | (_K if key is not None else 0) | (_S if seq is not None else 0)
    )
    hdr = bytearray(_HDR.pack(flags, protocol))
    if checksum:
        hdr += b"\x00\x00\x00\x00"
    if key is not None:
        hdr += key.to_bytes(4, "big")
    if seq is not None:
        hdr += seq.to_bytes(4, "big")
    msg = hdr + inner
    if checksum:
        struct.pack_into("!H", msg, 4, internet_checksum(msg))
    return bytes(msg)


def build_nvgre(vsid: int, inner: bytes = b"", flow_id: int = 0) -> bytes:
    if not 0 <= vsid < 1 << 24:
        raise ValueError(f"VSID {vsid} out of range 0..16777215")
    return build(GRE_PROTO_TEB, inner, key=(vsid << 8) | (flow_id & 0xFF))
