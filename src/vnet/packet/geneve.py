"""Geneve (RFC 8926), over UDP destination port 6081.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |        Virtual Network Identifier (VNI)       |    Reserved   |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                    Variable-Length Options                    |

Option TLV:
   |          Option Class         |      Type     |R|R|R| Length  |
   |                  Variable-Length Option Data                  |

Opt Len and each option's Length count 4-byte words.  Options are kept as
(class, type, data) tuples in wire order; the flow key maps selected ones to
`tun_metadata` fields through a TLV map (`TLV_MAP_DEFAULT` carries OVN's
logical-port option, class 0x0102 type 0x80).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import DecodeError, Reason

__all__ = [
    "GENEVE_LEN",
    "GENEVE_PORT",
    "TLV_MAP_DEFAULT",
    "Geneve",
    "GeneveOption",
    "build",
    "build_options",
    "options_to_metadata",
    "parse",
]

GENEVE_PORT = 6081
GENEVE_LEN = 8
_HDR = struct.Struct("!BBHI")
_OPT = struct.Struct("!HBB")

# (class, type) -> tun_metadata index
TLV_MAP_DEFAULT: dict[tuple[int, int], int] = {(0x0102, 0x80): 0}


class GeneveOption(NamedTuple):
    cls: int
    type: int
    data: bytes


class Geneve(NamedTuple):
    version: int
    oam: bool
    critical: bool
    protocol: int
    vni: int
    options: tuple[GeneveOption, ...]


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Geneve, int]:
    if len(buf) - off < GENEVE_LEN:
        raise DecodeError(Reason.TRUNCATED_GENEVE, f"{len(buf) - off} bytes", off)
    b0, b1, proto, w1 = _HDR.unpack_from(buf, off)
    opt_len = (b0 & 0x3F) * 4
    end = off + GENEVE_LEN + opt_len
    if end > len(buf):
        raise DecodeError(Reason.TRUNCATED_GENEVE, f"options length {opt_len}", off)
    opts: list[GeneveOption] = []
    o = off + GENEVE_LEN
    while o < end:
        if end - o < 4:
            raise DecodeError(Reason.BAD_GENEVE_OPTION, "short option header", o)
        cls, typ, ln = _OPT.unpack_from(buf, o)
        dlen = (ln & 0x1F) * 4
        if o + 4 + dlen > end:
            raise DecodeError(Reason.BAD_GENEVE_OPTION, f"option length {dlen}", o)
        opts.append(GeneveOption(cls, typ, bytes(buf[o + 4 : o + 4 + dlen])))
        o += 4 + dlen
    hdr = Geneve(b0 >> 6, bool(b1 & 0x80), bool(b1 & 0x40), proto, w1 >> 8, tuple(opts))
    return hdr, end


def build_options(options: tuple[GeneveOption, ...] | list[GeneveOption]) -> bytes:
    out = bytearray()
    for opt in options:
        data = opt.data + b"\x00" * ((-len(opt.data)) % 4)
        if len(data) > 124:
            raise ValueError(f"geneve option data of {len(data)} bytes exceeds 124")
        out += _OPT.pack(opt.cls, opt.type, len(data) // 4) + data
    return bytes(out)


def build(
    vni: int,
    inner: bytes = b"",
    options: tuple[GeneveOption, ...] | list[GeneveOption] = (),
    *,
    protocol: int = 0x6558,
    oam: bool = False,
    critical: bool = False,
) -> bytes:
    if not 0 <= vni < 1 << 24:
        raise ValueError(f"VNI {vni} out of range 0..16777215")
    opts = build_options(options)
    if len(opts) > 252:
        raise ValueError("geneve options exceed 252 bytes")
    b1 = (0x80 if oam else 0) | (0x40 if critical else 0)
    return _HDR.pack(len(opts) // 4, b1, protocol, vni << 8) + opts + inner


def options_to_metadata(
    options: tuple[GeneveOption, ...], tlv_map: dict[tuple[int, int], int] | None = None
) -> tuple[int, int, int, int]:
    """Map options to the four tun_metadata values of the flow key."""
    tm = TLV_MAP_DEFAULT if tlv_map is None else tlv_map
    md = [0, 0, 0, 0]
    for opt in options:
        idx = tm.get((opt.cls, opt.type))
        if idx is not None and 0 <= idx < 4:
            md[idx] = int.from_bytes(opt.data[:4], "big")  # tun_metadata fields are 32 bits
    return md[0], md[1], md[2], md[3]
