"""TCP for the connection tracker: the window algorithm, one end's state at a time.

Guido van Rooij's "Real Stateful TCP Packet Filtering in IP Filter", as
OpenBSD's pf, Open vSwitch's userspace conntrack and (in spirit) Linux do:
each end's highest sequence sent (`seqlo`) and the highest the other end
allows (`seqhi`: acknowledged + window, scaled), the largest window seen; a
segment must fall inside the other side's window, acknowledge no more than
one window ahead, and a RST must carry (nearly) the exact next sequence
number.  Connections picked up mid-stream (no SYN seen) are tracked loosely
with an unknown window scale.  `tcp_update` moves a connection's ends and its
timeout; the tracker (`conntrack`) owns the table.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..packet import flowkey as fk

if TYPE_CHECKING:
    from .conntrack import Conn

__all__ = [
    "SYN",
    "TCP_STATE_NAMES",
    "Peer",
    "tcp_new",
    "tcp_run",
    "tcp_update",
    "tcp_valid_new",
]

# one end's TCP state, in the order the window algorithm compares them
CLOSED, LISTEN, SYN_SENT, SYN_RECV, ESTABLISHED, CLOSE_WAIT = range(6)
FIN_WAIT_1, CLOSING, LAST_ACK, FIN_WAIT_2, TIME_WAIT = range(6, 11)
TCP_STATE_NAMES = (
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT",
    "FIN_WAIT_1", "CLOSING", "LAST_ACK", "FIN_WAIT_2", "TIME_WAIT",
)  # fmt: skip

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
MAX_WSCALE = 14
WSCALE_SEEN = 0x80  # the end announced a window scale (the low bits hold it)
WSCALE_UNKNOWN = 0x40  # picked up mid-stream: any scale up to the maximum
MAX_ACK_WINDOW = 0xFFFF + 1500
_M32 = 0xFFFFFFFF

_TCP = struct.Struct("!HHIIBBH")  # ports, seq, ack, data offset, flags, window


def _seq_geq(a: int, b: int) -> bool:
    """a >= b in sequence space (RFC 1982)."""
    return (a - b) & _M32 < 0x80000000


@dataclass(slots=True)
class Peer:
    seqlo: int = 0  # highest sequence number this end sent (+ its length)
    seqhi: int = 0  # highest the other end allows it to send
    max_win: int = 0  # largest window this end announced, unscaled
    wscale: int = 0
    state: int = CLOSED


def _tcp_invalid_flags(flags: int) -> bool:
    if flags & SYN:
        if flags & (RST | FIN):
            return True
    elif not flags & (ACK | RST):
        return True
    return not flags & ACK and bool(flags & (FIN | PSH | URG))


_BAD_FLAGS = bytes(_tcp_invalid_flags(f) for f in range(0x1000))


def tcp_valid_new(flags: int) -> bool:
    # a SYN+ACK may not open a connection: only a SYN, or one already established
    return not _tcp_invalid_flags(flags) and (flags & (SYN | ACK)) != (SYN | ACK)


# per IP version and distance from the IP header to the TCP header: one struct reading
# the IP payload length field and the TCP header's seq, ack, data offset and window
_FIELDS: dict[tuple[int, int], Any] = {}


def _fields_struct(v6: bool, gap: int) -> Any:
    at = 4 if v6 else 2  # the length field; IPv6's counts from after the 40-byte header
    s = _FIELDS[(v6, gap)] = struct.Struct(f"!{at}xH{gap - at - 2 + 4}xIIBxH").unpack_from
    return s


def _tcp_fields(frame: bytes | bytearray, key: Any) -> tuple[int, int, int, int, int]:
    """seq, ack, window, header length, payload length (from the IP header's length:
    Ethernet padding is not data)."""
    l3, l4 = key[fk.L3_OFS], key[fk.L4_OFS]
    v6 = key[fk.ETH_TYPE] != 0x0800
    unpack = _FIELDS.get((v6, l4 - l3)) or _fields_struct(v6, l4 - l3)
    tlen, seq, ack, off, win = unpack(frame, l3)
    hlen = (off >> 4) * 4
    end = l3 + tlen + 40 if v6 else l3 + tlen
    n = len(frame)
    plen = (end if end < n else n) - l4 - hlen
    return seq, ack, win, hlen, plen if plen > 0 else 0


def _wscale(frame: bytes | bytearray, l4: int, hlen: int) -> int:
    o, end = l4 + 20, min(l4 + hlen, len(frame))
    while o + 2 < end + 1 and o < end:
        kind = frame[o]
        if kind == 0:
            break
        if kind == 1:
            o += 1
            continue
        if o + 1 >= end:
            break
        n = max(2, frame[o + 1])
        if kind == 3 and n == 3 and o + 2 < end:
            return min(frame[o + 2], MAX_WSCALE) | WSCALE_SEEN
        o += n
    return 0


def tcp_new(frame: bytes | bytearray, key: Any) -> tuple[Peer, Peer]:
    l4 = key[fk.L4_OFS]
    flags = key[fk.TCP_FLAGS]
    seq, _, win, hlen, plen = _tcp_fields(frame, key)
    src, dst = Peer(), Peer()
    src.seqlo = seq
    src.seqhi = (seq + plen + 1) & _M32
    if flags & SYN:
        src.seqhi = (src.seqhi + 1) & _M32
        src.wscale = _wscale(frame, l4, hlen)
    else:
        src.wscale = dst.wscale = WSCALE_UNKNOWN
    src.max_win = max(win, 1)
    if src.wscale & 0x0F:
        src.max_win = -(-src.max_win // (1 << (src.wscale & 0x0F)))
    if flags & FIN:
        src.seqhi = (src.seqhi + 1) & _M32
    dst.seqhi = 1
    dst.max_win = 1
    src.state = SYN_SENT
    dst.state = CLOSED
    return src, dst


def tcp_update(
    conn: Conn,
    d: int,
    frame: bytes | bytearray,
    key: Any,
    timeouts: dict[str, float],
    now: float,
) -> str:
    """Advance `conn` by a segment travelling in direction `d`: valid | invalid | new.

    Run for every segment of every tracked connection, so the sequence
    comparisons are written out (`(a - b) & _M32 < 2**31` is `a >= b` in
    sequence space) rather than called."""
    peers = conn.peers
    assert peers is not None
    if d:
        dst, src = peers
    else:
        src, dst = peers
    flags = key[fk.TCP_FLAGS]
    if _BAD_FLAGS[flags & 0xFFF]:
        return "invalid"
    if flags & (SYN | ACK) == SYN and dst.state >= FIN_WAIT_2 and src.state >= FIN_WAIT_2 and not d:
        return "new"
    l4 = key[fk.L4_OFS]
    seq, ack, win, hlen, plen = _tcp_fields(frame, key)
    sws = dws = 0
    if not flags & SYN:
        if src.wscale & WSCALE_SEEN and dst.wscale & WSCALE_SEEN:
            sws, dws = src.wscale & 0x0F, dst.wscale & 0x0F
        elif src.wscale & WSCALE_UNKNOWN and dst.wscale & WSCALE_UNKNOWN:
            sws = dws = MAX_WSCALE
    orig_seq = seq
    check_ackskew = True
    end = (seq + plen) & _M32
    if src.state < SYN_SENT:  # the first packet from this end
        if flags & SYN:
            end = (end + 1) & _M32
            if dst.wscale & WSCALE_SEEN:
                src.wscale = _wscale(frame, l4, hlen)
                if src.wscale & WSCALE_SEEN:
                    sws = src.wscale & 0x0F
                    win = -(-win // (1 << sws))
                    dws = dst.wscale & 0x0F
                else:
                    dst.max_win <<= dst.wscale & 0x0F
                    dst.wscale = 0
        if flags & FIN:
            end = (end + 1) & _M32
        src.seqlo = seq
        src.state = SYN_SENT
        if src.seqhi == 1 or _seq_geq((end + max(1, dst.max_win << dws)) & _M32, src.seqhi):
            src.seqhi = (end + max(1, dst.max_win << dws)) & _M32
            check_ackskew = False  # a new connection, or one picked up: be lenient
        if win > src.max_win:
            src.max_win = win
    elif flags & (SYN | FIN):
        if flags & SYN:
            end = (end + 1) & _M32
        if flags & FIN:
            end = (end + 1) & _M32
    if not flags & ACK or (ack == 0 and flags & (ACK | RST) == ACK | RST):
        ack = dst.seqlo  # nothing acknowledged: let it pass the ack skew check
    if seq == end:  # no data: ease the sequence checks
        seq = end = src.seqlo
    ackskew = 0
    if check_ackskew:
        ackskew = (dst.seqlo - ack) & _M32
        if ackskew & 0x80000000:
            ackskew -= 1 << 32
    if (
        (src.seqhi - end) & _M32 < 0x80000000  # seqhi >= end
        and (seq - src.seqlo + (dst.max_win << dws)) & _M32 < 0x80000000  # seq >= seqlo - win
        and -MAX_ACK_WINDOW <= ackskew <= (MAX_ACK_WINDOW << sws)
        and (
            not flags & RST
            or orig_seq in (src.seqlo, (src.seqlo + 1) & _M32, (src.seqlo - 1) & _M32)
        )
    ):
        _slide(src, dst, win, sws, end, ack)
        if flags & (SYN | FIN | RST) or dst.state != ESTABLISHED or src.state != ESTABLISHED:
            name = _moved(conn, src, dst, flags, d)
        else:
            name = "tcp_established"
        conn.timeout, conn.expires = name, now + timeouts[name]
        return "valid"
    if (
        (dst.state < SYN_SENT or dst.state >= FIN_WAIT_2 or src.state >= FIN_WAIT_2)
        and _seq_geq((src.seqhi + MAX_ACK_WINDOW) & _M32, end)
        and _seq_geq(seq, (src.seqlo - MAX_ACK_WINDOW) & _M32)
    ):
        # shotgunned SYNs, a connection picked up late, stray packets after a close:
        # accepted, but the timeout is not refreshed (a flood keeps nothing alive)
        _slide(src, dst, win, sws, end, ack)
        if flags & FIN and src.state < CLOSING:
            src.state = CLOSING
        if flags & RST:
            src.state = dst.state = TIME_WAIT
            conn.rst = True
        return "valid"
    return "invalid"


def tcp_run(
    conn: Conn,
    d: int,
    q: Sequence[tuple[bytes, bytes | bytearray]],
    start: int,
    key: Any,
    timeouts: dict[str, float],
    now: float,
) -> tuple[int, int]:
    """`tcp_update` for a run of segments with the same headers -- `key`, flags
    among them -- of a connection established at both ends, carrying no SYN,
    FIN or RST: how many of `q` from `start` on are valid (each moving the
    window as `tcp_update` moves it; the first invalid one ends the run,
    untouched), and their bytes.  Neither end's state can change in such a
    run, nor the timeout, nor what a check reads of the other end, so those
    are read once.  (-1, 0) for a run of any other kind."""
    peers = conn.peers
    flags = key[fk.TCP_FLAGS]
    if peers is None or flags & (SYN | FIN | RST) or not flags & ACK or _BAD_FLAGS[flags & 0xFFF]:
        return -1, 0
    if d:
        dst, src = peers
    else:
        src, dst = peers
    expires = now + timeouts["tcp_established"]
    if src.state != ESTABLISHED or dst.state != ESTABLISHED or expires <= now:
        return -1, 0
    sws = dws = 0
    if src.wscale & WSCALE_SEEN and dst.wscale & WSCALE_SEEN:
        sws, dws = src.wscale & 0x0F, dst.wscale & 0x0F
    elif src.wscale & WSCALE_UNKNOWN and dst.wscale & WSCALE_UNKNOWN:
        sws = dws = MAX_WSCALE
    l3, l4 = key[fk.L3_OFS], key[fk.L4_OFS]
    v6 = key[fk.ETH_TYPE] != 0x0800
    unpack = _FIELDS.get((v6, l4 - l3)) or _fields_struct(v6, l4 - l3)
    ip_end = l3 + 40 if v6 else l3  # where the IP length field counts from
    seqhi, peer_lo = src.seqhi, dst.seqlo  # only src.seqlo, src.max_win and dst.seqhi move
    lo, hi, max_win = src.seqlo, dst.seqhi, src.max_win
    back = dst.max_win << dws
    # the ack's skew from the peer's seqlo, signed, within [-MAX_ACK_WINDOW,
    # MAX_ACK_WINDOW << sws]: one unsigned compare after a shift by MAX_ACK_WINDOW
    # (the span stays under 2**32)
    span = (MAX_ACK_WINDOW << sws) + MAX_ACK_WINDOW
    skew0 = peer_lo + MAX_ACK_WINDOW
    k = nbytes = 0
    # the ack and window of the last segment checked in full: a segment in order
    # (at seqlo) that repeats them passes the ack and window checks as that one did,
    # and moves neither max_win nor the peer's seqhi, so only its end is checked
    ack0 = win0 = -1
    for _, frame in islice(q, start, None):
        tlen, seq, ack, off, win = unpack(frame, l3)
        size = len(frame)
        e = ip_end + tlen
        plen = (e if e < size else size) - l4 - (off >> 4) * 4
        if seq == lo and ack == ack0 and win == win0:
            end = (seq + plen) & _M32 if plen > 0 else lo
            if (seqhi - end) & _M32 >= 0x80000000:
                break
            lo = end
            nbytes += size
            k += 1
            continue
        end = (seq + plen) & _M32 if plen > 0 else seq
        if seq == end:  # no data: ease the sequence checks
            seq = end = lo
        if not (
            (seqhi - end) & _M32 < 0x80000000
            and (seq - lo + back) & _M32 < 0x80000000
            and (skew0 - ack) & _M32 <= span
        ):
            break
        if max_win < win:  # `_slide`, written out
            max_win = win
        if (lo - end) & _M32 >= 0x80000000:
            lo = end
        w = win << sws
        if (ack + w - hi) & _M32 < 0x80000000:
            hi = (ack + (w or 1)) & _M32
        ack0, win0 = ack, win
        nbytes += size
        k += 1
    src.seqlo, dst.seqhi, src.max_win = lo, hi, max_win
    if k:
        conn.timeout, conn.expires = "tcp_established", expires
    return k, nbytes


def _moved(conn: Conn, src: Peer, dst: Peer, flags: int, d: int) -> str:
    """The ends' states after an accepted segment with `flags`, and the timeout's name."""
    if flags & SYN and src.state < SYN_SENT:
        src.state = SYN_SENT
    if flags & FIN and src.state < CLOSING:
        src.state = CLOSING
    if flags & ACK:
        if dst.state == SYN_SENT:
            dst.state = ESTABLISHED
        elif dst.state == CLOSING:
            dst.state = FIN_WAIT_2
    if flags & RST:
        src.state = dst.state = TIME_WAIT
        conn.rst = True
    if src.state >= FIN_WAIT_2 and dst.state >= FIN_WAIT_2:
        return "tcp_close" if conn.rst else "tcp_time_wait"
    if src.state >= CLOSING and dst.state >= CLOSING:
        return "tcp_last_ack"
    if src.state < ESTABLISHED or dst.state < ESTABLISHED:
        return "tcp_syn_recv" if d or conn.replied else "tcp_syn_sent"
    if src.state >= CLOSING or dst.state >= CLOSING:
        return "tcp_fin_wait"
    return "tcp_established"


def _slide(src: Peer, dst: Peer, win: int, sws: int, end: int, ack: int) -> None:
    if src.max_win < win:
        src.max_win = win
    if (src.seqlo - end) & _M32 >= 0x80000000:  # end > seqlo
        src.seqlo = end
    w = win << sws
    if (ack + w - dst.seqhi) & _M32 < 0x80000000:  # ack + window >= seqhi
        dst.seqhi = (ack + (w or 1)) & _M32
