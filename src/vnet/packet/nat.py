"""Address and port translation of one packet's bytes: what NAT writes.

The connection tracker decides the translation (`Rewrite`: the addresses and
ports the packet must carry); this module is the only code that writes it,
for the datapath and the trace alike (`rewrite` on a frame, `rewrite_key`
on a flow key for the trace, which has no frame).  Only fields whose value
changes are written.

Checksums are updated incrementally (RFC 1624), never recomputed from the
data, so a translation costs the same for any packet size and a packet that
arrived with a bad checksum leaves with one: the IPv4 header checksum; the
TCP, UDP and ICMPv6 checksums over the pseudo-header (addresses) and the
ports or the ICMP echo identifier; a UDP-over-IPv4 checksum of 0 (none)
stays 0.  SCTP's CRC32c covers no pseudo-header, and a port change runs it
over the packet before and after as `pipeline.odp` does.  A frame whose
transport checksum is left to the device (a virtio-net `NEEDS_CSUM` frame:
the field holds the pseudo-header sum, not yet complemented) gets the
opposite update for an address, and none for a port: the device sums the
header later.

An ICMP or ICMPv6 error carries the packet it answers: the outer addresses
are rewritten, then the quoted header (addresses with the inner IPv4 header
checksum and the inner transport checksum when the quote reaches it, ports
or echo identifier), and the error's own checksum is computed again over
the message -- Linux and Open vSwitch do the same, since the quote is part
of what it covers.

Offsets come from the flow key (`L3_OFS`, `L4_OFS`) of the frame as it is:
the translation changes no length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from crc32c import crc32c

from . import flowkey as fk
from .checksum import internet_checksum, pseudo_header_v6, update_bytes

__all__ = ["Rewrite", "rewrite", "rewrite_key"]

_PORTS = frozenset((6, 17, 132))
_ECHO = {1: (0, 8), 58: (128, 129)}  # echo reply and request types

# how a checksum field takes an update: plain, UDP over IPv4 (0: none), partial (NEEDS_CSUM)
_PLAIN, _UDP4, _PARTIAL = 0, 1, 2


class Rewrite(NamedTuple):
    """What one packet must carry after translation.

    `sport`/`dport` are TCP, UDP or SCTP ports; for an ICMP echo `sport` is
    the identifier (`dport` unused).  For an ICMP error, `src`/`dst` are the
    outer addresses and `inner` the quoted packet's (src, dst, sport, dport).
    """

    src: int
    dst: int
    sport: int = 0
    dport: int = 0
    inner: tuple[int, int, int, int] | None = None


def _csum_update(buf: bytearray, at: int, old: bytes, new: bytes, how: int) -> None:
    if at + 2 > len(buf):
        return
    c = (buf[at] << 8) | buf[at + 1]
    if how == _UDP4 and c == 0:
        return  # no checksum over IPv4
    if how == _PARTIAL:
        c = ~update_bytes(~c & 0xFFFF, old, new) & 0xFFFF
    else:
        c = update_bytes(c, old, new)
        if how == _UDP4 and c == 0:
            c = 0xFFFF
    buf[at] = c >> 8
    buf[at + 1] = c & 0xFF


def _patch(buf: bytearray, pos: int, new: bytes, csums: Sequence[tuple[int, int]]) -> None:
    """Write `new` at `pos` and update each checksum (offset, how) for the change."""
    end = pos + len(new)
    if end > len(buf) or buf[pos:end] == new:
        return
    a, b = pos & ~1, end + (end & 1)  # the 16-bit words the field lies in
    if b > len(buf):
        buf[pos:end] = new  # an odd tail word: no checksum can cover it
        return
    old = bytes(buf[a:b])
    buf[pos:end] = new
    cur = bytes(buf[a:b])
    for at, how in csums:
        _csum_update(buf, at, old, cur, how)


def _l4_csum(proto: int, v4: bool, l4: int, partial: bool) -> tuple[int, int] | None:
    """Where the transport checksum is, and how it takes an update (None: no sum)."""
    if proto == 6:
        return (l4 + 16, _PARTIAL if partial else _PLAIN)
    if proto == 17:
        return (l4 + 6, _PARTIAL if partial else (_UDP4 if v4 else _PLAIN))
    if proto == 58:
        return (l4 + 2, _PLAIN)
    return None


def _ip_end(buf: bytearray, l3: int, v4: bool) -> int:
    if v4:
        end = l3 + ((buf[l3 + 2] << 8) | buf[l3 + 3])
    else:
        end = l3 + 40 + ((buf[l3 + 4] << 8) | buf[l3 + 5])
    return min(end, len(buf))


def _sctp_ports(buf: bytearray, l4: int, end: int, sport: int, dport: int) -> None:
    new = sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    if buf[l4 : l4 + 4] == new:
        return
    if end - l4 < 12:
        buf[l4 : l4 + 4] = new
        return
    stored = int.from_bytes(buf[l4 + 8 : l4 + 12], "little")
    buf[l4 + 8 : l4 + 12] = bytes(4)
    before = crc32c(bytes(buf[l4:end]))
    buf[l4 : l4 + 4] = new
    after = crc32c(bytes(buf[l4:end]))
    buf[l4 + 8 : l4 + 12] = (stored ^ before ^ after).to_bytes(4, "little")


def _translate(
    buf: bytearray,
    l3: int,
    l4: int,
    v4: bool,
    proto: int,
    rw: Rewrite | tuple[int, int, int, int],
    partial: bool,
    end: int,
    whole_l4: bool,
    quoted: bool = False,
) -> None:
    """Addresses, then ports or echo identifier, of the IP packet at `l3`.

    `whole_l4`: the transport header is there (not a later fragment).  A
    `quoted` packet (inside an ICMP error) is cut short: its transport checksum
    is updated only if the quote reaches it, and SCTP's CRC (over the whole
    packet) is left alone."""
    src, dst, sport, dport = rw[0], rw[1], rw[2], rw[3]
    tcs = _l4_csum(proto, v4, l4, partial) if whole_l4 else None
    if tcs is not None and tcs[0] + 2 > end:
        tcs = None
    if v4:
        csums = [(l3 + 10, _PLAIN)]
        if tcs is not None and proto != 58:
            csums.append(tcs)
        _patch(buf, l3 + 12, src.to_bytes(4, "big"), csums)
        _patch(buf, l3 + 16, dst.to_bytes(4, "big"), csums)
    else:
        csums = [tcs] if tcs is not None else []
        _patch(buf, l3 + 8, src.to_bytes(16, "big"), csums)
        _patch(buf, l3 + 24, dst.to_bytes(16, "big"), csums)
    if not whole_l4 or not l4:
        return
    if proto in _PORTS:
        if proto == 132 and not quoted:
            _sctp_ports(buf, l4, end, sport, dport)
            return
        port_csum = [] if tcs is None or tcs[1] == _PARTIAL else [tcs]
        _patch(buf, l4, sport.to_bytes(2, "big") + dport.to_bytes(2, "big"), port_csum)
    elif proto in _ECHO and l4 + 8 <= end and buf[l4] in _ECHO[proto]:
        csum = (l4 + 2, _PLAIN) if l4 + 4 <= end else None
        _patch(buf, l4 + 4, sport.to_bytes(2, "big"), [csum] if csum else [])


def rewrite(buf: bytearray, key: Sequence[int], rw: Rewrite, partial_csum: bool = False) -> None:
    """Translate the frame in `buf` (as `key` describes it) to carry `rw`, in place.

    `partial_csum`: the transport checksum is left to the device (NEEDS_CSUM)."""
    et = key[fk.ETH_TYPE]
    if et != 0x0800 and et != 0x86DD:
        return
    v4 = et == 0x0800
    l3, l4 = key[fk.L3_OFS], key[fk.L4_OFS]
    proto = key[fk.IP_PROTO]
    end = _ip_end(buf, l3, v4)
    whole = bool(l4) and not key[fk.IP_FRAG] & fk.FRAG_LATER
    if rw.inner is None:
        _translate(buf, l3, l4, v4, proto, rw, partial_csum, end, whole)
        return
    # an ICMP error: the outer addresses (the error's own checksum is summed at the end)
    _translate(buf, l3, 0, v4, proto, (rw.src, rw.dst, 0, 0), False, end, False)
    o = l4 + 8  # the quoted packet
    if v4:
        if o + 20 > end:
            return
        il4 = o + (buf[o] & 0x0F) * 4
        iproto = buf[o + 9]
    else:
        if o + 40 > end:
            return
        il4, iproto = o + 40, buf[o + 6]
    _translate(buf, o, il4, v4, iproto, rw.inner, False, end, il4 + 8 <= end, True)
    buf[l4 + 2 : l4 + 4] = b"\x00\x00"
    if v4:
        c = internet_checksum(buf[l4:end])
    else:
        src = int.from_bytes(buf[l3 + 8 : l3 + 24], "big")
        dst = int.from_bytes(buf[l3 + 24 : l3 + 40], "big")
        c = internet_checksum(pseudo_header_v6(src, dst, 58, end - l4), buf[l4:end])
    buf[l4 + 2 : l4 + 4] = c.to_bytes(2, "big")


def rewrite_key(key: list[int], rw: Rewrite) -> None:
    """The same translation on a flow key (what a trace, which has no frame, sees)."""
    if key[fk.ETH_TYPE] == 0x0800:
        key[fk.IPV4_SRC], key[fk.IPV4_DST] = rw.src, rw.dst
    elif key[fk.ETH_TYPE] == 0x86DD:
        key[fk.IPV6_SRC], key[fk.IPV6_DST] = rw.src, rw.dst
    else:
        return
    if rw.inner is None and key[fk.IP_PROTO] in _PORTS and not key[fk.IP_FRAG] & fk.FRAG_LATER:
        key[fk.TP_SRC], key[fk.TP_DST] = rw.sport, rw.dport
