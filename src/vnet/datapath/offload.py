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
A tunnel port is the exception: `segment` cuts a TCP GSO frame into the
MSS-sized segments the workload's stack left to "hardware" (software GSO, as
Linux's `skb_segment` does: sequence numbers advanced, IPv4 ids counted up,
FIN/PSH on the last segment only, CWR on the first, every checksum whole),
so a TCP stream crosses the overlay in frames the underlay can carry.
When the frame's length changed in front of the checksummed part (a VLAN tag
pushed or popped), `shift` moves `csum_start` and `hdr_len` along.
"""

from __future__ import annotations

import struct

from ..packet.checksum import internet_checksum

__all__ = ["HDR_LEN", "NO_HDR", "finish", "fit", "is_gso", "segment", "shift", "wire_len"]

HDR_LEN = 10
NO_HDR = bytes(HDR_LEN)
F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4, GSO_TCPV6, GSO_ECN = 1, 4, 0x80
_TPIDS = (0x8100, 0x88A8, 0x9100)
_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset


def is_gso(hdr: bytes) -> bool:
    return len(hdr) == HDR_LEN and hdr[1] != GSO_NONE


def wire_len(hdr: bytes, frame: bytes) -> int:
    """The length of the longest frame `frame` is on the wire: itself, or for a GSO frame
    its first segment's -- the headers (to the end of TCP's, or UDP's 8 bytes) and
    `gso_size` of payload -- what a router's MTU check must judge, not the super-frame."""
    if not is_gso(hdr):
        return len(frame)
    _, gso, _, size, l4, _ = _HDR.unpack(hdr)
    kind = gso & ~GSO_ECN
    if kind in (GSO_TCPV4, GSO_TCPV6) and l4 + 13 < len(frame):
        end = l4 + (frame[l4 + 12] >> 4) * 4
    else:
        end = l4 + 8
    return min(len(frame), end + size) if size else len(frame)


def shift(hdr: bytes, delta: int) -> bytes:
    if not delta or len(hdr) != HDR_LEN or hdr == NO_HDR:
        return hdr
    flags, gso, hdr_len, gso_size, start, off = _HDR.unpack(hdr)
    if flags & F_NEEDS_CSUM:
        start += delta
    if gso:
        hdr_len = max(0, hdr_len + delta)
    return _HDR.pack(flags, gso, hdr_len, gso_size, start, off)


def fit(hdr: bytes, frame: bytes, want: bool) -> tuple[bytes, bytes] | None:
    """The frame as a device with (`want`) or without the header takes it: a header
    added if missing, or the frame finished and its header dropped; None for a GSO
    frame a device without the header cannot take."""
    if want:
        return (hdr or NO_HDR, frame)
    if not hdr:
        return (b"", frame)
    fin = finish(hdr, frame)
    return None if fin is None else (b"", fin)


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


def segment(hdr: bytes, frame: bytes) -> list[bytes] | None:
    """A finished frame, or a TCP GSO frame cut into finished segments; None if it
    cannot be (UDP GSO, or headers that do not parse)."""
    if len(hdr) != HDR_LEN or hdr == NO_HDR or hdr[1] == GSO_NONE:
        fin = finish(hdr, frame)
        return None if fin is None else [fin]
    _, gso, _, mss, l4, _ = _HDR.unpack(hdr)
    kind = gso & ~GSO_ECN
    if kind not in (GSO_TCPV4, GSO_TCPV6) or mss == 0:
        return None
    l3 = 14
    et = int.from_bytes(frame[12:14], "big")
    while et in _TPIDS and len(frame) >= l3 + 4:
        et = int.from_bytes(frame[l3 + 2 : l3 + 4], "big")
        l3 += 4
    v4 = kind == GSO_TCPV4
    if et != (0x0800 if v4 else 0x86DD) or l4 + 20 > len(frame) or l4 < l3 + (20 if v4 else 40):
        return None
    end = l4 + (frame[l4 + 12] >> 4) * 4
    if end > len(frame) or end < l4 + 20:
        return None
    head, data = frame[:end], memoryview(frame)[end:]
    src_dst = frame[l3 + 12 : l3 + 20] if v4 else frame[l3 + 8 : l3 + 40]
    seq0 = int.from_bytes(frame[l4 + 4 : l4 + 8], "big")
    ident0 = int.from_bytes(frame[l3 + 4 : l3 + 6], "big") if v4 else 0
    flags0 = frame[l4 + 13]
    n = max(1, -(-len(data) // mss))
    out = []
    for i in range(n):
        chunk = data[i * mss : (i + 1) * mss]
        seg = bytearray(head)
        seg += chunk
        tcp_len = len(seg) - l4
        if v4:
            struct.pack_into("!HH", seg, l3 + 2, len(seg) - l3, (ident0 + i) & 0xFFFF)
            seg[l3 + 10 : l3 + 12] = b"\x00\x00"
            struct.pack_into("!H", seg, l3 + 10, internet_checksum(seg[l3:l4]))
        else:
            struct.pack_into("!H", seg, l3 + 4, len(seg) - l3 - 40)
        struct.pack_into("!I", seg, l4 + 4, (seq0 + i * mss) & 0xFFFFFFFF)
        fl = flags0
        if i < n - 1:
            fl &= ~0x09  # FIN, PSH: the last segment's
        if i > 0:
            fl &= ~0x80  # CWR: the first segment's
        seg[l4 + 13] = fl
        seg[l4 + 16 : l4 + 18] = b"\x00\x00"
        if v4:
            ph = src_dst + struct.pack("!BBH", 0, 6, tcp_len)
        else:
            ph = src_dst + struct.pack("!IxxxB", tcp_len, 6)
        struct.pack_into("!H", seg, l4 + 16, internet_checksum(ph, seg[l4:]))
        out.append(bytes(seg))
    return out
