"""NAT for the connection tracker: choosing a translation, and what it makes of a packet.

A translated connection is an ordinary one whose reply tuple is not the
mirror of its original: `nat(src=...)` changes the reply's destination
(address and port: where replies must go to reach the translated source),
`nat(dst=...)` its source.  Replies find the connection by that tuple with
the tracker's one lookup, and the translation of any packet follows from
the two tuples alone (`packet_rewrite`, `error_rewrite`): a packet of the
original direction leaves as the mirror of the reply tuple, a reply as the
mirror of the original.

`allocate` picks the reply tuple as Open vSwitch's userspace tracker
(`nat_get_unique_tuple`) and Linux (`get_unique_tuple`) do:

- the address from the range, starting at a hash of the connection's tuple
  (the default and `hash`), of its source address only (`persistent`: one
  source keeps one address), or at random (`random`), then the next ones;
- for each address, the port: the packet's own if it is in the port range
  (or there is none) and free, else the range from a hashed starting point;
  without a port range, source NAT keeps to the port's class as both do
  (1-511, 600-1023, 1024-65535); destination NAT without a port range keeps
  the destination port and, on a clash, moves the source port within its
  class, as Open vSwitch does;
- ICMP echo: the identifier plays the port (as Linux does), any of 65536.

A candidate is taken when its tuple is in the table (either direction of
any connection, expired ones excepted).  The search stops after
`MAX_TRIES` lookups -- Linux bounds its port search too, to keep a full
table from costing a full scan per packet -- and reports exhaustion.

Pure: the caller passes the table lookup, the hash basis and the random
source.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from ..packet.addr import ip4_int, ip4_str, ip6_int, ip6_str
from ..packet.nat import Rewrite
from ..pipeline.actions import Nat

__all__ = [
    "MAX_TRIES",
    "NatRange",
    "Tuple",
    "allocate",
    "error_rewrite",
    "nat_range",
    "packet_rewrite",
]

Tuple = tuple[int, int, int, int, int, int, int]  # zone, version, proto, src, dst, sport, dport

MAX_TRIES = 1 << 16
_ICMP = frozenset((1, 58))


@dataclass(frozen=True, slots=True)
class NatRange:
    """A `nat` action, ready for the tracker: `kind` "" applies a connection's
    existing translation; "src"/"dst" also set one up for a new connection.
    `version` is 0 when no address is given (the packet's address is kept)."""

    kind: str = ""
    version: int = 0
    addr_min: int = 0
    addr_max: int = 0
    port_min: int = 0
    port_max: int = 0
    flags: frozenset[str] = frozenset()

    def text(self) -> str:
        fmt = ip4_str if self.version == 4 else ip6_str
        if not self.version:
            return "(the packet's address)"
        lo, hi = fmt(self.addr_min), fmt(self.addr_max)
        return lo if lo == hi else f"{lo}-{hi}"


@lru_cache(maxsize=1024)
def nat_range(nat: Nat) -> NatRange:
    """The action's range as numbers; ValueError naming what is wrong."""
    flags = frozenset(nat.flags)
    if not nat.kind:
        return NatRange(flags=flags)
    version = lo = hi = 0
    if nat.addr_min:
        version = 6 if ":" in nat.addr_min else 4
        parse = ip6_int if version == 6 else ip4_int
        try:
            lo = parse(nat.addr_min)
            hi = parse(nat.addr_max) if nat.addr_max else lo
        except ValueError:
            raise ValueError(
                f"nat: {nat.addr_min}-{nat.addr_max}: addresses of one family expected"
            ) from None
        if hi < lo:
            raise ValueError(f"nat: address range {nat.addr_min}-{nat.addr_max} runs backwards")
    elif nat.addr_max:
        raise ValueError(f"nat: address range -{nat.addr_max} has no first address")
    pmin, pmax = nat.port_min, nat.port_max or nat.port_min
    if nat.port_max and not nat.port_min:
        raise ValueError(f"nat: port range 0-{nat.port_max}: ports start at 1")
    if pmax < pmin:
        raise ValueError(f"nat: port range {pmin}-{pmax} runs backwards")
    return NatRange(nat.kind, version, lo, hi, pmin, pmax, flags)


def _port_class(port: int) -> tuple[int, int]:
    if port < 512:
        return 1, 511
    if port < 1024:
        return 600, 1023
    return 1024, 65535


def _candidates(cur: int, lo: int, hi: int, start: int) -> Iterator[int]:
    """`cur` first if it is in [lo, hi], then the range from `start` on, wrapping."""
    if lo <= cur <= hi:
        yield cur
    size = hi - lo + 1
    for i in range(size):
        p = lo + (start + i) % size
        if p != cur:
            yield p


def allocate(
    orig: Tuple,
    reply: Tuple,
    rng: NatRange,
    taken: Callable[[Tuple], bool],
    basis: int,
    rand: random.Random,
) -> Tuple | None:
    """The translated reply tuple of a new connection (`reply`: its plain mirror),
    or None when every candidate is taken."""
    zone, version, proto, src, dst, sport, dport = orig
    snat = rng.kind == "src"
    a_slot = 4 if snat else 3
    cur = src if snat else dst
    lo, hi = (rng.addr_min, rng.addr_max) if rng.version else (cur, cur)
    if "random" in rng.flags:
        h, hp = rand.getrandbits(64), rand.getrandbits(32)
    else:
        if "persistent" in rng.flags:
            h = hash((basis, zone, version, src, lo, hi))
        else:
            h = hash((basis, *orig, lo, hi, rng.port_min, rng.port_max))
        hp = hash((h, 1))
    h &= 0xFFFFFFFFFFFFFFFF
    hp &= 0xFFFFFFFF
    # the port (or ICMP identifier) slot of the reply tuple, its current value, its range
    second: tuple[int, int, int, int] | None = None
    if proto in _ICMP:
        p_slot, p_cur, p_lo, p_hi = 5, sport, 0, 65535
    elif snat:
        p_slot, p_cur = 6, sport
        p_lo, p_hi = (rng.port_min, rng.port_max) if rng.port_min else _port_class(sport)
    else:
        p_slot, p_cur = 5, dport
        p_lo, p_hi = (rng.port_min, rng.port_max) if rng.port_min else (dport, dport)
        second = (6, sport, *_port_class(sport))
    cand = list(reply)
    tries = 0
    n = hi - lo + 1
    for i in range(n):
        cand[a_slot] = lo + (h + i) % n
        first = -1
        for p in _candidates(p_cur, p_lo, p_hi, hp):
            if first < 0:
                first = p
            cand[p_slot] = p
            t: Tuple = tuple(cand)  # type: ignore[assignment]
            if not taken(t):
                return t
            tries += 1
            if tries >= MAX_TRIES:
                return None
        if second is not None:  # destination NAT: the source port moves instead
            cand[p_slot] = first
            s_slot, s_cur, s_lo, s_hi = second
            for p in _candidates(s_cur, s_lo, s_hi, hp):
                cand[s_slot] = p
                t = tuple(cand)  # type: ignore[assignment]
                if not taken(t):
                    return t
                tries += 1
                if tries >= MAX_TRIES:
                    return None
            cand[s_slot] = s_cur
    return None


def packet_rewrite(orig: Tuple, reply: Tuple, d: int) -> Rewrite:
    """What a packet of direction `d` carries after translation: the mirror of the
    other direction's tuple (an ICMP echo: its identifier in `sport`)."""
    t = reply if d == 0 else orig
    if t[2] in _ICMP:
        return Rewrite(t[4], t[3], t[5], 0)
    return Rewrite(t[4], t[3], t[6], t[5])


def error_rewrite(orig: Tuple, reply: Tuple, kind: str, d: int, src: int, dst: int) -> Rewrite:
    """An ICMP error travelling in direction `d` (outer `src` -> `dst`): the outer
    address on the translated side changes as a packet's of that direction
    would, and the quoted packet -- one of the other direction -- becomes what
    it was on its own side: the original tuple, or the reply tuple."""
    if d == 0:
        if kind == "src":
            src = reply[4]
        else:
            dst = reply[3]
        q = reply
    else:
        if kind == "src":
            dst = orig[3]
        else:
            src = orig[4]
        q = orig
    inner = (q[3], q[4], q[5], q[5] if q[2] in _ICMP else q[6])
    return Rewrite(src, dst, 0, 0, inner)
