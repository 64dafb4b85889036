"""Internet checksums (RFC 1071) and incremental update (RFC 1624).

The one's-complement sum of 16-bit words is the data read as one big-endian
integer, modulo 0xFFFF (2**16 = 1 mod 0xFFFF): `int.from_bytes` and one
modulo, both in C, five times faster than summing words.

Rewriting a field does not recompute the whole checksum: RFC 1624 eqn. 3,
HC' = ~(~HC + ~m + m'), updates it from the old and new 16-bit words.
"""

from __future__ import annotations

import struct

__all__ = [
    "internet_checksum",
    "pseudo_header_v4",
    "pseudo_header_v6",
    "update_bytes",
    "update_word",
]


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """One's-complement sum of data's 16-bit big-endian words, folded to 16 bits.

    2**16 = 1 (mod 0xFFFF), so the sum of the words is the whole buffer read as
    one big integer, mod 0xFFFF: `int.from_bytes` and one modulo, both in C.
    An odd last byte is the high byte of a word padded with zero.  A sum of
    words that are not all zero is 0xFFFF, never 0 (the end-around carry).
    """
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8
    s = v % 0xFFFF
    return 0xFFFF if s == 0 and v else s


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def internet_checksum(*chunks: bytes | bytearray | memoryview) -> int:
    """Checksum over the concatenation of chunks; every chunk but the last must be even."""
    s = 0
    for c in chunks:
        s += _sum16(c)
    return (~_fold(s)) & 0xFFFF


def pseudo_header_v4(src: int, dst: int, proto: int, length: int) -> bytes:
    return struct.pack("!IIBBH", src, dst, 0, proto, length)


def pseudo_header_v6(src: int, dst: int, next_header: int, length: int) -> bytes:
    return (
        src.to_bytes(16, "big")
        + dst.to_bytes(16, "big")
        + struct.pack("!IxxxB", length, next_header)
    )


def update_word(checksum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for one 16-bit word."""
    s = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new
    return (~_fold(s)) & 0xFFFF


def update_bytes(checksum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 for a field of even length starting at an even offset (addresses, ports)."""
    if len(old) != len(new) or len(old) & 1:
        raise ValueError("update_bytes needs two even-length fields of the same size")
    s = (~checksum & 0xFFFF) + _sum16(bytes(~b & 0xFF for b in old)) + _sum16(new)
    return (~_fold(s)) & 0xFFFF
