"""Internet checksums (RFC 1071) and incremental update (RFC 1624).

The one's-complement sum does not depend on byte order (RFC 1071 §2(B)), so the
sum is taken over native 16-bit words with `memoryview.cast("H")`, which runs in
C, and the folded result is swapped to network order once at the end.

Rewriting a field does not recompute the whole checksum: RFC 1624 eqn. 3,
HC' = ~(~HC + ~m + m'), updates it from the old and new 16-bit words.
"""

from __future__ import annotations

import struct
import sys

__all__ = [
    "internet_checksum",
    "pseudo_header_v4",
    "pseudo_header_v6",
    "update_bytes",
    "update_word",
]

_LITTLE = sys.byteorder == "little"


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """Unfolded one's-complement sum of data (network order result, unfolded)."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    total = 0
    if n & 1:
        total = mv[n - 1] << 8
        mv = mv[: n - 1]
    if len(mv):
        s = sum(mv.cast("H"))
        if _LITTLE:
            # fold then swap: folding commutes with the byte swap of the final sum
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            s = ((s & 0xFF) << 8) | (s >> 8)
        total += s
    return total


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
