"""IP fragment reassembly for connection tracking, as Open vSwitch's userspace datapath does.

The tracker needs a whole datagram: the ports are in the first fragment only
and a TCP segment's length is spread over all of them.  So a fragment that
reaches `ct` is held here, with its datagram's other fragments, until every
byte is present; then the datagram put back together (`Reassembled.packet`)
is tracked once, and the *original* fragments (`Reassembled.frags`, in order
of offset) go on, unmodified, with the state the datagram got -- Open
vSwitch's lib/ipf.c does the same: the receiver reassembles what left the
switch, and it is exactly what the tracker saw, because nothing that
overlaps ever leaves.

A datagram's fragments are found by Open vSwitch's key: zone, where in the
pipeline they reached `ct` (`point`, OVS's recirculation id), IP version,
source, destination, identification (16 bits for IPv4, the fragment
header's 32 for IPv6) and, for IPv4, the protocol.

Limits, Open vSwitch's defaults:

- a fragment that is not the last must be at least `min_frag_size` bytes of
  IP (1200 for IPv4, 1280 -- the IPv6 minimum MTU -- for IPv6), so a
  transport header cannot be cut into slivers (`ipf_too_small`);
- `max_frags` fragments held in all (1000), and per datagram as many as a
  65,535-byte datagram needs in fragments of that minimum size
  (`ipf_too_many`); a datagram that would be longer is `ipf_bad`, as is a
  fragment whose IPv4 header checksum is wrong, whose lengths disagree, that
  is not a multiple of 8 bytes without being the last, or that contradicts
  the datagram's known end;
- a list is given `timeout` (15 s) from its first fragment; then its
  fragments are dropped (`ipf_timeout`), oldest list first.

Overlaps: an exact duplicate of a held fragment is dropped alone
(`ipf_duplicate`; RFC 8200 section 4.5 allows it, and what the receiver gets
is unchanged).  Any other overlap is refused: for IPv6 as RFC 5722 says --
the whole datagram, the fragments held and those still to come, is
discarded (`ipf_overlap`; the list stays, empty, until its time is up); for
IPv4 as Open vSwitch does -- the overlapping fragment alone.  Open vSwitch
hands a refused fragment on marked `inv`; here each refusal is a drop with
its reason, so the firewall's verdict does not depend on an `+inv` flow, and
the counters say why.

Enabled by default for both versions, as in Open vSwitch (`v4`/`v6`, its
`dpctl/ipf-set-enabled`): with reassembly off a fragment cannot be tracked,
and a stateful firewall drops every large UDP datagram.  Holding fragments
costs only what is in flight, within the limits above.

The reassembled packet is the first fragment's layer 2 and IP header (IPv4:
total length set, more-fragments cleared, checksum recomputed; IPv6: the
fragment header taken out and the payload length set) followed by the data
in order.  Pure: bytes in, bytes out, the clock passed in (`now`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from ..packet import flowkey as fk
from ..packet.addr import ip4_str, ip6_str
from ..packet.checksum import internet_checksum
from ..packet.errors import DecodeError
from ..packet.ipv6 import EXT_FRAGMENT, walk_extensions

__all__ = [
    "MAX_FRAGS",
    "MAX_FRAGS_BOUND",
    "MIN_FRAG_BOUND",
    "MIN_FRAG_SIZE",
    "REASONS",
    "TIMEOUT",
    "Ipf",
    "Reassembled",
    "Refused",
]

T = TypeVar("T")

TIMEOUT = 15.0  # seconds a datagram may take to arrive whole (Open vSwitch's)
MIN_FRAG_SIZE = {4: 1200, 6: 1280}  # bytes of IP, every fragment but the last
MIN_FRAG_BOUND = 400  # the smallest `min_frag_size` accepted (Open vSwitch's)
MAX_FRAGS = 1000
MAX_FRAGS_BOUND = 5000
REASONS = (
    "ipf_too_small",
    "ipf_overlap",
    "ipf_duplicate",
    "ipf_timeout",
    "ipf_too_many",
    "ipf_bad",
)
_IP4 = struct.Struct("!BxHHHxBxxII")  # version/IHL, total length, id, flags/offset, proto, addrs
_MAX_DATAGRAM = 65535

Key = tuple[int, Any, int, int, int, int, int]  # zone, point, version, src, dst, id, proto


@dataclass(frozen=True, slots=True)
class _Frag(Generic[T]):
    start: int  # offset of its data in the datagram
    end: int  # one past its last byte
    frame: bytes  # as it came (Ethernet padding too)
    l3: int  # where its IP header starts in `frame`
    data: int  # where its data starts
    trim: int  # where its IP packet ends
    nh_at: int  # IPv6: the Next Header byte that names the fragment header
    nxt: int  # IPv6: what follows the fragment header
    item: T


@dataclass(frozen=True, slots=True)
class Reassembled(Generic[T]):
    """A datagram complete: the packet to track, and its fragments in order of offset."""

    packet: bytes
    parts: list[_Frag[T]]

    @property
    def frags(self) -> list[T]:
        """The callers' items, in order of offset."""
        return [f.item for f in self.parts]

    def fragments(self, translated: bytes | None = None) -> list[bytes]:
        """The fragments' frames as they came; with `translated` (`packet` after NAT,
        the same length), each with its addresses and the first with its transport
        header taken from it -- every IPv4 header checksum recomputed.  The transport
        checksum covers the whole datagram, so the translated one is right for the
        first fragment as it stands (Open vSwitch copies it the same way)."""
        if translated is None:
            return [f.frame for f in self.parts]
        if len(translated) != len(self.packet):
            raise ValueError("translated: the datagram changed length; fragments cannot follow")
        out = []
        first = self.parts[0]
        l3 = first.l3
        v4 = (first.frame[l3] >> 4) == 4
        # the translated datagram's data starts where the first fragment's does (IPv4),
        # or 8 bytes earlier (IPv6: no fragment header)
        body = first.data if v4 else first.data - 8
        for f in self.parts:
            b = bytearray(f.frame)
            if v4:
                b[f.l3 + 12 : f.l3 + 20] = translated[l3 + 12 : l3 + 20]
                ihl = f.data - f.l3
                b[f.l3 + 10 : f.l3 + 12] = b"\0\0"
                struct.pack_into("!H", b, f.l3 + 10, internet_checksum(b[f.l3 : f.l3 + ihl]))
            else:
                b[f.l3 + 8 : f.l3 + 40] = translated[l3 + 8 : l3 + 40]
            if f.start == 0:
                n = f.trim - f.data
                b[f.data : f.trim] = translated[body : body + n]
            out.append(bytes(b))
        return out


@dataclass(frozen=True, slots=True)
class Refused:
    """The fragment is dropped for `reason`; `count` fragments in all (an IPv6 overlap
    takes the fragments held for its datagram with it)."""

    reason: str
    count: int = 1


@dataclass(slots=True)
class _List(Generic[T]):
    key: Key
    expires: float
    frags: list[_Frag[T]] = field(default_factory=list)
    total: int = -1  # the datagram's data length, once its last fragment is here
    have: int = 0  # bytes of data held
    failed: bool = False  # IPv6 overlap: the datagram is discarded, later fragments too


class _Parsed(NamedTuple):
    start: int
    end: int
    last: bool
    ident: int
    proto: int  # IPv4's; IPv6 keys without it, as Open vSwitch does
    l3: int
    data: int
    trim: int  # where the IP packet ends (Ethernet padding follows)
    nh_at: int = 0
    nxt: int = 0


def _counters() -> dict[str, int]:
    return {"accepted": 0, "completed": 0, "reassembled": 0, **dict.fromkeys(REASONS, 0)}


class Ipf(Generic[T]):
    """Fragment lists of datagrams on their way to the tracker."""

    def __init__(
        self,
        enabled: bool = True,
        min_frag_size: dict[int, int] | None = None,
        max_frags: int = MAX_FRAGS,
        timeout: float = TIMEOUT,
    ) -> None:
        self.enabled = {4: enabled, 6: enabled}
        self.min_frag_size = dict(MIN_FRAG_SIZE)
        for v, size in (min_frag_size or {}).items():
            self.set_min_frag(v, size)
        self.max_frags = 0
        self.set_max_frags(max_frags)
        self.timeout = timeout
        self.held = 0  # fragments held, in all lists
        self.counters = {4: _counters(), 6: _counters()}
        self._lists: dict[Key, _List[T]] = {}  # oldest first: lists expire in this order

    # -- configuration (Open vSwitch's dpctl/ipf-set-*) ---------------------------------
    def set_min_frag(self, version: int, size: int) -> None:
        if version not in (4, 6):
            raise ValueError(f"version: expected 4 or 6, got {version!r}")
        if not MIN_FRAG_BOUND <= size <= _MAX_DATAGRAM:
            raise ValueError(
                f"min_frag_size: expected {MIN_FRAG_BOUND}..{_MAX_DATAGRAM}, got {size!r}"
            )
        self.min_frag_size[version] = size

    def set_max_frags(self, n: int) -> None:
        if not 0 <= n <= MAX_FRAGS_BOUND:
            raise ValueError(f"max_frags: expected 0..{MAX_FRAGS_BOUND}, got {n!r}")
        self.max_frags = n

    def max_list_frags(self, version: int) -> int:
        """Fragments one datagram may have: as many as 65,535 bytes take in fragments of
        the minimum size with the longest header (IPv4: 60 bytes; IPv6: 40 + 8)."""
        hdr = 60 if version == 4 else 48
        return -(-(_MAX_DATAGRAM - hdr) // (self.min_frag_size[version] - hdr))

    # -- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._lists)

    def stats(self) -> dict[str, Any]:
        """What `dpctl/ipf-get-status` shows: settings, fragments held, counters."""
        return {
            "enabled": {f"v{v}": on for v, on in self.enabled.items()},
            "min_frag_size": {f"v{v}": s for v, s in self.min_frag_size.items()},
            "max_frags": self.max_frags,
            "timeout": self.timeout,
            "fragments": self.held,
            "lists": len(self._lists),
            "v4": dict(self.counters[4]),
            "v6": dict(self.counters[6]),
        }

    def dump(self) -> list[str]:
        """One line per list, as `dpctl/ipf-get-status -m` prints them."""
        lines = []
        for lst in self._lists.values():
            zone, point, v, src, dst, ident, proto = lst.key
            fmt = ip4_str if v == 4 else ip6_str
            if lst.failed:
                state = "reassemble fail"
            else:
                first = any(f.start == 0 for f in lst.frags)
                state = {
                    (True, True): "first/last frag",
                    (True, False): "first frag",
                    (False, True): "last frag",
                    (False, False): "other frag",
                }[(first, lst.total >= 0)]
            lines.append(
                f"(src={fmt(src)},dst={fmt(dst)},recirc_id={point},ip_id={ident},"
                f"dl_type=0x{0x800 if v == 4 else 0x86DD:x},zone={zone},nw_proto={proto},"
                f"num_fragments={len(lst.frags)},state={state})"
            )
        return lines

    # -- changing -----------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Drop the lists whose time is up, oldest first; the fragments dropped."""
        lists = self._lists
        gone = 0
        while lists:
            key = next(iter(lists))
            lst = lists[key]
            if lst.expires > now:
                break
            del lists[key]
            n = len(lst.frags)
            if n:
                self.held -= n
                self.counters[key[2]]["ipf_timeout"] += n
                gone += n
        return gone

    def flush(self) -> int:
        """Forget every list (not counted as drops: the caller asked)."""
        n = self.held
        self._lists.clear()
        self.held = 0
        return n

    def add(
        self,
        frame: bytes | bytearray,
        key: tuple[int, ...] | list[int],
        zone: int,
        now: float,
        item: T,
        point: Any = 0,
    ) -> Reassembled[T] | Refused | None:
        """Take one fragment (`key` is its flow key, `ip_frag` set): None while its
        datagram is incomplete, the datagram once it is, or why it is dropped.

        `item` is the caller's, handed back in `Reassembled.frags`.  Lists past their
        time are dropped first (`expire`: the caller may call it itself to count them)."""
        self.expire(now)
        v = 4 if key[fk.ETH_TYPE] == 0x0800 else 6
        c = self.counters[v]
        p = _parse4(frame, key) if v == 4 else _parse6(frame, key)
        if isinstance(p, str):
            c[p] += 1
            return Refused(p)
        if not p.last and p.trim - p.l3 < self.min_frag_size[v]:
            c["ipf_too_small"] += 1
            return Refused("ipf_too_small")
        if self.held >= self.max_frags:
            c["ipf_too_many"] += 1
            return Refused("ipf_too_many")
        src, dst = (
            (key[fk.IPV4_SRC], key[fk.IPV4_DST]) if v == 4 else (key[fk.IPV6_SRC], key[fk.IPV6_DST])
        )
        lkey: Key = (zone, point, v, src, dst, p.ident, p.proto)
        lst = self._lists.get(lkey)
        if lst is None:
            if len(self._lists) >= self.max_frags:  # abandoned IPv6 lists hold none
                c["ipf_too_many"] += 1
                return Refused("ipf_too_many")
            lst = self._lists[lkey] = _List(lkey, now + self.timeout)
        elif lst.failed:
            c["ipf_overlap"] += 1
            return Refused("ipf_overlap")
        why = self._fits(lst, p, v)
        if why is not None:
            c[why] += 1
            if why != "ipf_overlap" or v == 4:
                return Refused(why)
            n = len(lst.frags)  # RFC 5722: the whole datagram goes
            c[why] += n
            self.held -= n
            lst.frags.clear()
            lst.failed = True
            return Refused(why, n + 1)
        frag = _Frag(p.start, p.end, bytes(frame), p.l3, p.data, p.trim, p.nh_at, p.nxt, item)
        frags = lst.frags
        i = len(frags)
        while i and frags[i - 1].start > p.start:
            i -= 1
        frags.insert(i, frag)
        lst.have += p.end - p.start
        if p.last:
            lst.total = p.end
        self.held += 1
        c["accepted"] += 1
        if lst.have != lst.total:
            return None
        del self._lists[lkey]
        self.held -= len(frags)
        packet = _reassemble4(frags) if v == 4 else _reassemble6(frags)
        if packet is None:
            c["ipf_bad"] += len(frags)
            return Refused("ipf_bad", len(frags))
        c["completed"] += len(frags)
        c["reassembled"] += 1
        return Reassembled(packet, frags)

    def _fits(self, lst: _List[T], p: _Parsed, v: int) -> str | None:
        """Why fragment `p` cannot join `lst`, or None."""
        for f in lst.frags:
            if p.start < f.end and f.start < p.end:
                return "ipf_duplicate" if (f.start, f.end) == (p.start, p.end) else "ipf_overlap"
        if p.last:
            if lst.total >= 0 or any(f.end > p.end for f in lst.frags):
                return "ipf_bad"  # a second end, or data beyond this one
        elif 0 <= lst.total < p.end:
            return "ipf_bad"
        if len(lst.frags) >= self.max_list_frags(v):
            return "ipf_too_many"
        return None


# -- parsing and putting together ----------------------------------------------------
def _parse4(frame: bytes | bytearray, key: Any) -> _Parsed | str:
    l3 = key[fk.L3_OFS]
    if len(frame) < l3 + 20:
        return "ipf_bad"
    vihl, tlen, ident, fo, proto, _s, _d = _IP4.unpack_from(frame, l3)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or tlen < ihl or l3 + tlen > len(frame):
        return "ipf_bad"
    if internet_checksum(frame[l3 : l3 + ihl]) != 0:
        return "ipf_bad"
    start = (fo & 0x1FFF) * 8
    last = not fo & 0x2000
    n = tlen - ihl
    if not n or (not last and n % 8) or start + n + ihl > _MAX_DATAGRAM:
        return "ipf_bad"
    return _Parsed(start, start + n, last, ident, proto, l3, l3 + ihl, l3 + tlen)


def _parse6(frame: bytes | bytearray, key: Any) -> _Parsed | str:
    l3 = key[fk.L3_OFS]
    if len(frame) < l3 + 40:
        return "ipf_bad"
    plen = (frame[l3 + 4] << 8) | frame[l3 + 5]
    end = l3 + 40 + plen
    if end > len(frame):
        return "ipf_bad"
    try:
        _proto, _l4, seen, frag = walk_extensions(frame, l3 + 40, frame[l3 + 6], end)
    except DecodeError:
        return "ipf_bad"
    i = next((i for i, h in enumerate(seen) if h.kind == EXT_FRAGMENT), -1)
    if frag is None or i < 0:
        return "ipf_bad"
    fh = seen[i].offset
    start = frag.offset * 8
    last = not frag.more
    n = end - (fh + 8)
    if not n or (not last and n % 8) or (fh - l3 - 40) + start + n > _MAX_DATAGRAM:
        return "ipf_bad"
    nh_at = l3 + 6 if i == 0 else seen[i - 1].offset
    return _Parsed(start, start + n, last, frag.ident, 0, l3, fh + 8, end, nh_at, frame[fh])


def _reassemble4(frags: list[_Frag[Any]]) -> bytes | None:
    first = frags[0]
    l3 = first.l3
    ihl = first.data - l3
    total = ihl + frags[-1].end
    if total > _MAX_DATAGRAM:
        return None
    head = bytearray(first.frame[: first.data])  # layer 2 and the first fragment's header
    fo = (head[l3 + 6] << 8) | head[l3 + 7]
    struct.pack_into("!H", head, l3 + 2, total)
    struct.pack_into("!H", head, l3 + 6, fo & 0x4000)  # DF kept; more-fragments, offset 0
    struct.pack_into("!H", head, l3 + 10, 0)
    struct.pack_into("!H", head, l3 + 10, internet_checksum(head[l3 : l3 + ihl]))
    return bytes(head) + b"".join([f.frame[f.data : f.trim] for f in frags])


def _reassemble6(frags: list[_Frag[Any]]) -> bytes | None:
    first = frags[0]
    l3 = first.l3
    head = bytearray(first.frame[: first.data - 8])  # without the fragment header
    head[first.nh_at] = first.nxt
    data = b"".join([f.frame[f.data : f.trim] for f in frags])
    plen = len(head) - l3 - 40 + len(data)
    if plen > _MAX_DATAGRAM:
        return None
    struct.pack_into("!H", head, l3 + 4, plen)
    return bytes(head) + data
