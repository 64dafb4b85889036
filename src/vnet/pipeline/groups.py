"""Group table (OpenFlow 1.3 §5.6): all, select, indirect, fast-failover.

A group is configuration (`GroupDesc`, immutable); its counters live beside it
(`GroupEntry`).  Selection is deterministic: `select` hashes the packet's
addresses and ports, so one connection always takes one bucket and a decision
can be cached; `fast_failover` takes the first bucket whose watched port is
live, and the switch invalidates cached decisions when liveness changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from ..packet import flowkey as fk
from .actions import Action

__all__ = [
    "Bucket",
    "GroupDesc",
    "GroupEntry",
    "GroupMod",
    "GroupModCommand",
    "GroupType",
    "select_hash",
]

ANY = 0xFFFFFFFF


class GroupType(Enum):
    ALL = "all"
    SELECT = "select"
    INDIRECT = "indirect"
    FAST_FAILOVER = "ff"


@dataclass(frozen=True, slots=True)
class Bucket:
    actions: tuple[Action, ...] = ()
    weight: int = 1
    watch_port: int = ANY
    watch_group: int = ANY


@dataclass(frozen=True, slots=True)
class GroupDesc:
    group_id: int
    type: GroupType
    buckets: tuple[Bucket, ...] = ()


class GroupEntry:
    __slots__ = ("bucket_counts", "byte_count", "desc", "packet_count")

    def __init__(self, desc: GroupDesc) -> None:
        self.desc = desc
        self.packet_count = 0
        self.byte_count = 0
        self.bucket_counts = [0] * len(desc.buckets)


class GroupModCommand(Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class GroupMod:
    command: GroupModCommand
    group: GroupDesc = field(default_factory=lambda: GroupDesc(0, GroupType.ALL))


_HASH_SLOTS = (
    fk.ETH_SRC,
    fk.ETH_DST,
    fk.IPV4_SRC,
    fk.IPV4_DST,
    fk.IPV6_SRC,
    fk.IPV6_DST,
    fk.IP_PROTO,
    fk.TP_SRC,
    fk.TP_DST,
)


def select_hash(fields: Sequence[int]) -> int:
    """Stable across processes: hashing a tuple of ints does not use the string seed."""
    return hash(tuple(fields[i] for i in _HASH_SLOTS)) & 0xFFFFFFFF
