"""The virtio-net header: checksum offload and GSO metadata carried with a frame.

Linux hands a packet socket with PACKET_VNET_HDR (and a TAP with IFF_VNET_HDR)
a 10-byte `struct virtio_net_hdr` before each frame.  When a workload's TCP
stack leaves the checksum to "hardware" (`NEEDS_CSUM`: the checksum field
holds only the pseudo-header sum, to be completed from `csum_start`) or hands
over one 64 KB segment to be cut later (`gso_type`, `gso_size`), the header
says so.  Passing the header through untouched from one offload-capable
device to another is what lets TCP run at full speed through the switch with
the workloads' default offloads on.

A device without the header (an in-memory port, a controller's packet-in)
needs a finished frame: `finish` completes a pending checksum; a GSO frame
cannot be delivered there and is reported so the caller counts the drop.
When the frame's length changed in front of the checksummed part (a VLAN tag
pushed or popped), `shift` moves `csum_start` and `hdr_len` along.
"""

from __future__ import annotations

import struct

from ..packet.checksum import internet_checksum

__all__ = ["HDR_LEN", "NO_HDR", "finish", "is_gso", "shift"]

HDR_LEN = 10
NO_HDR = bytes(HDR_LEN)
F_NEEDS_CSUM = 1
GSO_NONE = 0
_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset


def is_gso(hdr: bytes) -> bool:
    return len(hdr) == HDR_LEN and hdr[1] != GSO_NONE


def shift(hdr: bytes, delta: int) -> bytes:
    if not delta or len(hdr) != HDR_LEN or hdr == NO_HDR:
        return hdr
    flags, gso, hdr_len, gso_size, start, off = _HDR.unpack(hdr)
    if flags & F_NEEDS_CSUM:
        start += delta
    if gso:
        hdr_len = max(0, hdr_len + delta)
    return _HDR.pack(flags, gso, hdr_len, gso_size, start, off)


def finish(hdr: bytes, frame: bytes) -> bytes | None:
    """The frame with its checksum completed; None for a GSO frame (cannot be finished)."""
    if len(hdr) != HDR_LEN or hdr == NO_HDR:
        return frame
    flags, gso, _, _, start, off = _HDR.unpack(hdr)
    if gso != GSO_NONE:
        return None
    if not flags & F_NEEDS_CSUM:
        return frame
    at = start + off
    if at + 2 > len(frame) or start >= len(frame):
        return frame
    buf = bytearray(frame)
    c = internet_checksum(bytes(buf[start:]))
    buf[at : at + 2] = c.to_bytes(2, "big")
    return bytes(buf)
