"""The MAC learning table behind the `normal` action.

Keyed by (VLAN, MAC): the same address may live on different ports in
different VLANs, and a frame is only ever forwarded within its VLAN.  An
entry records the port and the last time the address was seen as a source;
entries older than `aging` seconds (default 300, as in Open vSwitch and the
802.1D default) are removed by `expire`.

A station that moves (the same MAC seen on another port) moves its entry at
once -- that is how a migrated VM is found again -- and the move is counted.
A port may be limited to `limit` learned addresses (the port-security MAC
limit); past it new addresses are not learned and the refusal is counted, so
a MAC flood on one port cannot evict everyone else's entries.  The whole
table is bounded too (`capacity`): when full, the oldest entry makes room.

`learn` returns True when forwarding decisions could change (new entry, move,
removal): the switch then invalidates its cached decisions.  Refreshing an
existing entry changes nothing cached and returns False.  `refresh` is the
late form of a refresh (for sightings charged after the fact): it never
learns, moves or ages an entry back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MacEntry", "MacTable"]

DEFAULT_AGING = 300.0
DEFAULT_CAPACITY = 8192


@dataclass(slots=True)
class MacEntry:
    port: int
    seen: float
    static: bool = False


class MacTable:
    def __init__(
        self,
        aging: float = DEFAULT_AGING,
        capacity: int = DEFAULT_CAPACITY,
        port_limit: Callable[[int], int] | None = None,
    ) -> None:
        self.aging = aging
        self.capacity = capacity
        self.port_limit = port_limit or (lambda port: 0)
        self.entries: dict[tuple[int, int], MacEntry] = {}
        self.per_port: dict[int, int] = {}
        self.moves = 0
        self.learned = 0
        self.refused = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, vlan: int, mac: int) -> int | None:
        e = self.entries.get((vlan, mac))
        return None if e is None else e.port

    def learn(self, vlan: int, mac: int, port: int, now: float) -> bool:
        if mac & (1 << 40):  # group address: never a source
            return False
        key = (vlan, mac)
        e = self.entries.get(key)
        if e is not None:
            if e.port == port:
                e.seen = now
                return False
            if e.static:
                return False
            self._count(e.port, -1)
            if not self._room(port):
                del self.entries[key]
                return True
            self.moves += 1
            e.port, e.seen = port, now
            self._count(port, 1)
            return True
        if not self._room(port):
            return False
        if len(self.entries) >= self.capacity:
            oldest = min(self.entries, key=lambda k: self.entries[k].seen)
            self._count(self.entries.pop(oldest).port, -1)
        self.entries[key] = MacEntry(port, now)
        self._count(port, 1)
        self.learned += 1
        return True

    def refresh(self, vlan: int, mac: int, port: int, seen: float) -> None:
        """`mac` was seen on `port` at `seen` (maybe a while ago): its age restarts then,
        if it is still learned on that port; otherwise nothing changes -- a late
        sighting never relearns or moves an address."""
        e = self.entries.get((vlan, mac))
        if e is not None and e.port == port and seen > e.seen:
            e.seen = seen

    def add_static(self, vlan: int, mac: int, port: int) -> None:
        old = self.entries.get((vlan, mac))
        if old is not None:
            self._count(old.port, -1)
        self.entries[(vlan, mac)] = MacEntry(port, 0.0, static=True)
        self._count(port, 1)

    def _room(self, port: int) -> bool:
        limit = self.port_limit(port)
        if limit and self.per_port.get(port, 0) >= limit:
            self.refused += 1
            return False
        return True

    def _count(self, port: int, delta: int) -> None:
        self.per_port[port] = self.per_port.get(port, 0) + delta

    def expire(self, now: float) -> int:
        old = [k for k, e in self.entries.items() if not e.static and now - e.seen >= self.aging]
        for k in old:
            self._count(self.entries.pop(k).port, -1)
        self.expired += len(old)
        return len(old)

    def flush(self, port: int | None = None, vlan: int | None = None) -> int:
        gone = [
            k
            for k, e in self.entries.items()
            if (port is None or e.port == port) and (vlan is None or k[0] == vlan)
        ]
        for k in gone:
            self._count(self.entries.pop(k).port, -1)
        return len(gone)

    def dump(self, now: float) -> list[tuple[int, int, int, float]]:
        """(port, vlan, mac, age) sorted like `ovs-appctl fdb/show`."""
        return sorted(
            (e.port, vlan, mac, 0.0 if e.static else now - e.seen)
            for (vlan, mac), e in self.entries.items()
        )
