"""TCP header (RFC 9293).  Options are skipped, not interpreted.

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |          Source Port          |       Destination Port        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                        Sequence Number                        |
   |                    Acknowledgment Number                      |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |  Data |     |N|C|E|U|A|P|R|S|F|                               |
   | Offset| Rsvd|S|W|C|R|C|S|S|Y|I|            Window             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |           Checksum            |         Urgent Pointer        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

`flags` holds the 12 bits under the offset nibble as OpenFlow's tcp_flags does
(FIN = 0x001 ... NS = 0x100).  The checksum uses the IPv4 or IPv6 pseudo-header.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import internet_checksum, pseudo_header_v4, pseudo_header_v6
from .errors import DecodeError, Reason

__all__ = [
    "ACK",
    "CWR",
    "ECE",
    "FIN",
    "FLAG_NAMES",
    "NS",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "Tcp",
    "build",
    "parse",
]

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = (1 << i for i in range(9))
FLAG_NAMES = {
    "fin": FIN,
    "syn": SYN,
    "rst": RST,
    "psh": PSH,
    "ack": ACK,
    "urg": URG,
    "ece": ECE,
    "cwr": CWR,
    "ns": NS,
}

_HDR = struct.Struct("!HHIIHHHH")


class Tcp(NamedTuple):
    src: int
    dst: int
    seq: int
    ack: int
    data_offset: int  # 32-bit words
    flags: int
    window: int
    checksum: int
    urgent: int


def parse(buf: bytes | bytearray | memoryview, off: int) -> tuple[Tcp, int]:
    avail = len(buf) - off
    if avail < 20:
        raise DecodeError(Reason.TRUNCATED_TCP, f"{avail} bytes", off)
    sp, dp, seq, ack, offflags, win, csum, urg = _HDR.unpack_from(buf, off)
    doff = offflags >> 12
    if doff < 5 or doff * 4 > avail:
        raise DecodeError(Reason.BAD_TCP_OFFSET, f"data offset {doff}, {avail} bytes", off)
    return Tcp(sp, dp, seq, ack, doff, offflags & 0xFFF, win, csum, urg), off + doff * 4


def build(
    src_port: int,
    dst_port: int,
    payload: bytes = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = SYN,
    window: int = 65535,
    options: bytes = b"",
    ip_src: int,
    ip_dst: int,
    ipv6: bool = False,
) -> bytes:
    if len(options) % 4:
        options += b"\x01" * (4 - len(options) % 4)  # NOP padding
    doff = 5 + len(options) // 4
    seg = bytearray(
        _HDR.pack(src_port, dst_port, seq, ack, (doff << 12) | (flags & 0xFFF), window, 0, 0)
    )
    seg += options
    seg += payload
    if ipv6:
        ph = pseudo_header_v6(ip_src, ip_dst, 6, len(seg))
    else:
        ph = pseudo_header_v4(ip_src, ip_dst, 6, len(seg))
    struct.pack_into("!H", seg, 16, internet_checksum(ph, seg))
    return bytes(seg)
