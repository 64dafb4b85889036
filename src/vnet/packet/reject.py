"""Answers that refuse a packet: TCP reset (RFC 9293) and ICMP unreachable (RFC 792, 4443).

What a firewall's `reject` sends back, so the sender learns at once that it
may not pass instead of waiting for its timeout.  Pure: the refused frame
in, the answer frame out (None when no answer is due).  The answer comes
from the address the packet was sent to and goes back to its sender: the
Ethernet addresses swapped (VLAN tags kept), the IP addresses swapped.

- TCP (not itself a reset): a RST as a closed port sends it (RFC 9293
  3.10.7.1).  A segment with ACK gets `<SEQ=SEG.ACK><CTL=RST>`; one without
  (a SYN) gets `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, SEG.LEN counting
  SYN and FIN -- an acknowledgment the sender accepts in SYN-SENT, so
  `connect()` fails with "connection refused" at once, and a sequence number
  exactly at the receiver's next expected one (RFC 5961 accepts it without a
  challenge) for a connection cut midway.
- Anything else on IPv4: ICMP destination unreachable, code 3 (port
  unreachable) for UDP, code 1 (host unreachable) otherwise -- the codes
  OVN's `reject` sends (controller/pinctrl.c, `pinctrl_handle_icmp`).  It
  quotes the offending datagram from its IP header on, as much as keeps the
  answer within 576 bytes (RFC 1812 4.3.2.3).
- On IPv6: ICMPv6 destination unreachable, code 4 (port unreachable) for
  UDP, code 1 (administratively prohibited) otherwise, again as OVN; the
  quote keeps the answer within the minimum MTU of 1280 bytes (RFC 4443 2.4).

No answer (RFC 1122 3.2.2, RFC 4443 2.4 e): to a reset, to an ICMP error
(only queries get one), to a fragment but the first, to a packet for a
multicast or broadcast address or from an unspecified, multicast or
broadcast one, or to a frame too short to hold its headers.  The quoted bytes
are the datagram as it came, checksums (SCTP's CRC32c too) not mended, as
Linux's `icmp_send` and OVN's pinctrl quote it: the sender finds its packet
by what it sent.  They end where the IP datagram does (Ethernet padding is
no part of it) or where the frame given does, when it was cut short (a
packet-in's `max_len`).
"""

from __future__ import annotations

import struct

from . import flowkey as fk
from . import icmp, icmpv6, ipv4, ipv6, tcp
from .errors import DecodeError
from .ethernet import header_len
from .icmperr import ip_end

__all__ = ["ICMP4_MAX", "ICMP6_MAX", "answer", "tcp_reset", "unreachable"]

ICMP4_MAX = 576  # an ICMPv4 error's whole datagram, at most (RFC 1812 4.3.2.3)
ICMP6_MAX = 1280  # an ICMPv6 error's whole packet, at most (the minimum MTU)
TTL = 64
_ICMP4_QUERIES = frozenset((0, 8, 13, 14, 15, 16, 17, 18))  # echo, timestamp, info, mask
_UDP, _TCP, _ICMP, _ICMP6 = 17, 6, 1, 58
_V4_BROADCAST = 0xFFFFFFFF


def _swapped_eth(frame: bytes, l2: int) -> bytes:
    return frame[6:12] + frame[0:6] + frame[12:l2]


def _v4_refusable(key: tuple[int, ...]) -> bool:
    src, dst = key[fk.IPV4_SRC], key[fk.IPV4_DST]
    if dst == _V4_BROADCAST or dst >> 28 == 0xE or src >> 28 == 0xE:
        return False
    return src not in (0, _V4_BROADCAST)


def _v6_refusable(key: tuple[int, ...]) -> bool:
    src, dst = key[fk.IPV6_SRC], key[fk.IPV6_DST]
    return dst >> 120 != 0xFF and src >> 120 != 0xFF and src != 0


def _refusable(frame: bytes, key: tuple[int, ...]) -> bool:
    """An IP packet, a first fragment (or none), to and from one host."""
    if key[fk.IP_FRAG] & fk.FRAG_LATER or not key[fk.L4_OFS]:
        return False
    if key[fk.ETH_DST] >> 40 & 1:  # a multicast or broadcast frame
        return False
    et = key[fk.ETH_TYPE]
    if et == 0x0800:
        return _v4_refusable(key)
    return et == 0x86DD and _v6_refusable(key)


def tcp_reset(frame: bytes) -> bytes | None:
    """The RST that refuses a TCP segment, or None when no answer is due."""
    key = fk.extract(frame)
    if key[fk.IP_PROTO] != _TCP or not _refusable(frame, key):
        return None
    l3, l4 = key[fk.L3_OFS], key[fk.L4_OFS]
    try:
        seg, _ = tcp.parse(frame, l4)
    except DecodeError:
        return None
    if seg.flags & tcp.RST:
        return None
    v6 = key[fk.ETH_TYPE] == 0x86DD
    if v6:
        ip_total = 40 + int.from_bytes(frame[l3 + 4 : l3 + 6], "big")
    else:
        ip_total = int.from_bytes(frame[l3 + 2 : l3 + 4], "big")
    seg_len = max(0, ip_total - (l4 - l3) - seg.data_offset * 4)
    seg_len += bool(seg.flags & tcp.SYN) + bool(seg.flags & tcp.FIN)
    if seg.flags & tcp.ACK:
        seq, ack, flags = seg.ack, 0, tcp.RST
    else:
        seq, ack, flags = 0, (seg.seq + seg_len) & 0xFFFFFFFF, tcp.RST | tcp.ACK
    l2, _ = header_len(frame)
    eth = _swapped_eth(frame, l2)
    if v6:
        src, dst = key[fk.IPV6_DST], key[fk.IPV6_SRC]
        body = tcp.build(seg.dst, seg.src, seq=seq, ack=ack, flags=flags, window=0,
                         ip_src=src, ip_dst=dst, ipv6=True)  # fmt: skip
        return eth + ipv6.build(src, dst, _TCP, body, hop_limit=TTL)
    src, dst = key[fk.IPV4_DST], key[fk.IPV4_SRC]
    body = tcp.build(seg.dst, seg.src, seq=seq, ack=ack, flags=flags, window=0,
                     ip_src=src, ip_dst=dst)  # fmt: skip
    return eth + ipv4.build(src, dst, _TCP, body, ttl=TTL, df=True)


def unreachable(frame: bytes) -> bytes | None:
    """The ICMP or ICMPv6 "destination unreachable" that refuses a packet, or None."""
    key = fk.extract(frame)
    if not _refusable(frame, key):
        return None
    proto = key[fk.IP_PROTO]
    l2, _ = header_len(frame)
    eth = _swapped_eth(frame, l2)
    l3 = key[fk.L3_OFS]
    end = ip_end(frame, key)
    if key[fk.ETH_TYPE] == 0x0800:
        if proto == _ICMP and key[fk.ICMP_TYPE] not in _ICMP4_QUERIES:
            return None
        code = 3 if proto == _UDP else 1
        quote = frame[l3 : min(end, l3 + ICMP4_MAX - 20 - 8)]
        src, dst = key[fk.IPV4_DST], key[fk.IPV4_SRC]
        body = icmp.build(icmp.TYPE_DEST_UNREACH, code, b"\0" * 4, quote)
        return eth + ipv4.build(src, dst, _ICMP, body, ttl=TTL)
    if proto == _ICMP6 and key[fk.ICMP_TYPE] < 128:
        return None
    code = 4 if proto == _UDP else 1
    quote = frame[l3 : min(end, l3 + ICMP6_MAX - 40 - 8)]
    src6, dst6 = key[fk.IPV6_DST], key[fk.IPV6_SRC]
    body6 = icmpv6.build(src6, dst6, 1, code, struct.pack("!I", 0) + quote)
    return eth + ipv6.build(src6, dst6, _ICMP6, body6, hop_limit=TTL)


def answer(frame: bytes) -> bytes | None:
    """What `reject` sends back: a RST for TCP, ICMP unreachable for the rest; None
    when nothing may be sent (see the module's note)."""
    key = fk.extract(frame)
    if key[fk.ETH_TYPE] in (0x0800, 0x86DD) and key[fk.IP_PROTO] == _TCP:
        return tcp_reset(frame)
    return unreachable(frame)
