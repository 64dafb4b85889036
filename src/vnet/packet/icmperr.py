"""ICMP errors a router sends about a packet it does not forward (RFC 792, RFC 1812, RFC 4443).

Pure: the offending frame in, with the router interface it came in by (its
MAC and address: the error's source), the error frame out -- or why none
is due.  The error goes back to the packet's sender: Ethernet destination
the packet's source MAC (VLAN tags kept), source the interface's MAC; IP
source the interface's address, destination the packet's source.  What
`packet.reject` sends differs: a refusal comes from the address the packet
was sent to, a router's error from the router that met it on the way.

- IPv4 (RFC 792): type and code as the caller says (time exceeded 11/0,
  net unreachable 3/0, fragmentation needed 3/4 with the MTU in `rest`),
  quoting the offending datagram from its IP header on -- RFC 792 asks for
  the header and 64 bits of data; Linux (`icmp_send`) and RFC 1812 4.3.2.3
  quote as much as keeps the error within 576 bytes, and so does this.  TTL
  64; precedence 6, internetwork control (RFC 1812 4.3.2.5, as Linux).
- IPv6 (RFC 4443): time exceeded 3/0, no route 1/0, packet too big 2/0
  with the MTU in `rest`; the quote keeps the error within the minimum MTU
  of 1280 bytes (2.4 c).  Hop limit 64.

The quote is the packet as the router got it (TTL 1 for time exceeded, no
hop taken off), checksums unmended, up to where the IP datagram ends
(Ethernet padding is no part of it) or the frame does.

No error (`silence` names why; RFC 1812 4.3.2.7, RFC 4443 2.4 e, RFC 1122
3.2.2): about an ICMP error (only queries get one, and an ICMP type a
router does not know counts as an error, as on Linux), about a fragment
but the first, about a packet sent to a link-layer multicast or broadcast
address or from one, to an IP multicast or limited broadcast address, from
a source that names no single host (unspecified, loopback, multicast,
broadcast, class E; for IPv6 unspecified, loopback, multicast) or from the
router's own address, or about a frame that is no IP packet whose headers
parse (or not of the family of the address to answer from).  (Packet too big may go to a multicast destination in RFC 4443; a
router's too-big path passes `multicast_ok`.)
"""

from __future__ import annotations

import ipaddress
import struct

from . import flowkey as fk
from . import icmp, icmpv6, ipv4, ipv6
from .addr import mac_int
from .ethernet import header_len

__all__ = ["ICMP4_ROOM", "ICMP6_ROOM", "SILENCE", "error", "ip_end", "silence"]

ICMP4_ROOM = 576  # an ICMPv4 error's whole datagram, at most (RFC 1812 4.3.2.3)
ICMP6_ROOM = 1280  # an ICMPv6 error's whole packet, at most (RFC 4443 2.4 c)
TTL = 64
DSCP_CONTROL = (
    0xC0 >> 2
)  # IP precedence 6, internetwork control (Linux: IPTOS_PREC_INTERNETCONTROL)
# ICMPv4 types that are no error (RFC 792, 950, 1256): echo, router advertisement and
# solicitation, timestamp, information, address mask
_ICMP4_NOT_ERRORS = frozenset((0, 8, 9, 10, 13, 14, 15, 16, 17, 18))
_ICMP, _ICMP6 = 1, 58
_BCAST4 = 0xFFFFFFFF
# why no error is due, each a counter's name
SILENCE = ("not_ip", "icmp_error", "fragment", "link_multicast", "multicast", "source",
           "own_address", "family")  # fmt: skip


def ip_end(frame: bytes, key: tuple[int, ...]) -> int:
    """Where the IP datagram ends in `frame` (its own length, or the frame's if cut)."""
    l3 = key[fk.L3_OFS]
    if key[fk.ETH_TYPE] == 0x0800:
        total = int.from_bytes(frame[l3 + 2 : l3 + 4], "big")
    else:
        total = 40 + int.from_bytes(frame[l3 + 4 : l3 + 6], "big")
    return min(len(frame), l3 + total)


def _v4_source_ok(src: int) -> bool:
    """A source that names one host: not 0/8, 127/8, multicast, class E or broadcast."""
    return src >> 24 not in (0, 127) and src >> 28 < 0xE


def _v6_source_ok(src: int) -> bool:
    return src > 1 and src >> 120 != 0xFF  # not ::, ::1 or ff00::/8


def silence(
    frame: bytes,
    address: str | None = None,
    key: tuple[int, ...] | None = None,
    multicast_ok: bool = False,
) -> str | None:
    """Why no ICMP error may be sent about `frame` (one of `SILENCE`), or None when
    one may.  `address`: the router's address the error would come from."""
    if key is None:
        key = fk.extract(frame)
    et = key[fk.ETH_TYPE]
    if et not in (0x0800, 0x86DD) or not key[fk.L4_OFS]:
        return "not_ip"
    own = ipaddress.ip_address(address) if address is not None else None
    if own is not None and own.version != (4 if et == 0x0800 else 6):
        return "family"
    if key[fk.IP_FRAG] & fk.FRAG_LATER:
        return "fragment"
    proto, t = key[fk.IP_PROTO], key[fk.ICMP_TYPE]
    if proto == _ICMP and et == 0x0800 and t not in _ICMP4_NOT_ERRORS:
        return "icmp_error"
    if proto == _ICMP6 and et == 0x86DD and t < 128:
        return "icmp_error"
    if key[fk.ETH_SRC] >> 40 & 1 or (key[fk.ETH_DST] >> 40 & 1 and not multicast_ok):
        return "link_multicast"
    if et == 0x0800:
        src, dst = key[fk.IPV4_SRC], key[fk.IPV4_DST]
        if not multicast_ok and (dst == _BCAST4 or dst >> 28 == 0xE):
            return "multicast"
        if not _v4_source_ok(src):
            return "source"
    else:
        src, dst = key[fk.IPV6_SRC], key[fk.IPV6_DST]
        if not multicast_ok and dst >> 120 == 0xFF:
            return "multicast"
        if not _v6_source_ok(src):
            return "source"
    if own is not None and src == int(own):
        return "own_address"
    return None


def error(
    frame: bytes,
    type_: int,
    code: int,
    mac: str | int,
    address: str,
    rest: int = 0,
    multicast_ok: bool = False,
) -> bytes | None:
    """The ICMP (for an IPv4 packet) or ICMPv6 error `type_`/`code` about `frame`, from
    the router interface with `mac` and `address` (of the packet's family); `rest` is
    the 32-bit word after the checksum (an MTU for too big).  None when no error is due
    (`silence` says why)."""
    key = fk.extract(frame)
    if silence(frame, address, key, multicast_ok) is not None:
        return None
    src_ip = int(ipaddress.ip_address(address))
    l2, _ = header_len(frame)
    src_mac = mac_int(mac) if isinstance(mac, str) else mac
    eth = frame[6:12] + src_mac.to_bytes(6, "big") + frame[12:l2]
    l3, end = key[fk.L3_OFS], ip_end(frame, key)
    word = struct.pack("!I", rest & 0xFFFFFFFF)
    if key[fk.ETH_TYPE] == 0x0800:
        quote = frame[l3 : min(end, l3 + ICMP4_ROOM - 20 - 8)]
        body = icmp.build(type_, code, word, quote)
        return eth + ipv4.build(src_ip, key[fk.IPV4_SRC], _ICMP, body, ttl=TTL,
                                dscp=DSCP_CONTROL)  # fmt: skip
    dst = key[fk.IPV6_SRC]
    quote = frame[l3 : min(end, l3 + ICMP6_ROOM - 40 - 8)]
    body6 = icmpv6.build(src_ip, dst, type_, code, word + quote)
    return eth + ipv6.build(src_ip, dst, _ICMP6, body6, hop_limit=TTL)
