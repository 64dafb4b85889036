"""Routed frames on the cached path: a decision that only rewrites the Ethernet
addresses and the TTL, then outputs.

A router's decision for a flow (`set(eth_src)`, `set(eth_dst)`, `set(ttl)`,
outputs) is the same for every frame of one signature cache entry: the
entry's key holds the fields it was made from, TTL included, so the new
Ethernet header and the new TTL are constants of the entry.  `plan` works
them out once; `apply` writes them into each frame by slicing -- the IPv4
header checksum updated incrementally for the TTL's word (RFC 1624, eqn. 3:
HC' = ~(~HC + ~m + m')), IPv6 has none -- so the entry's frames leave in one
batch, as switched frames do, instead of one at a time through the general
action interpreter (`pipeline.odp`).  What else a decision does (tunnels,
VLAN tags, other fields, conntrack, meters, the controller) takes the
general path; this is that path's result for these decisions, not another
implementation of the actions: `odp.apply` gives the same bytes
(tests/unit/datapath/test_rewrite.py checks both on the same frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ..packet import flowkey as fk

__all__ = ["Rewrite", "apply", "apply_batch", "plan"]

_FIELDS = frozenset((fk.ETH_SRC, fk.ETH_DST, fk.IP_TTL))


class Rewrite(NamedTuple):
    """What an entry writes into each of its frames, and where they go."""

    eth: bytes  # the new destination and source MACs: the frame's first 12 bytes
    l3: int  # the IP header's offset
    ttl: int  # the new TTL (hop limit); -1: left alone
    v4: bool  # IPv4: the header checksum follows the TTL
    outs: tuple[int, ...]  # the output ports, in order


def plan(ops: Sequence[tuple[Any, ...]], key: Sequence[int]) -> Rewrite | None:
    """The rewrite `ops` make of frames of `key`, if that is all they do (None: not)."""
    et = key[fk.ETH_TYPE]
    if et not in (0x0800, 0x86DD) or not key[fk.L3_OFS]:
        return None
    sets: dict[int, int] = {}
    outs: list[int] = []
    for op in ops:
        if op[0] == "set" and op[1] in _FIELDS and not outs:
            sets[op[1]] = op[2]
        elif op[0] == "output" and len(op) == 2:
            outs.append(op[1])
        else:
            return None
    if not sets or not outs:
        return None
    dst, src = sets.get(fk.ETH_DST, key[fk.ETH_DST]), sets.get(fk.ETH_SRC, key[fk.ETH_SRC])
    eth = dst.to_bytes(6, "big") + src.to_bytes(6, "big")
    return Rewrite(eth, key[fk.L3_OFS], sets.get(fk.IP_TTL, -1), et == 0x0800, tuple(outs))


def apply(r: Rewrite, frame: bytes) -> bytes:
    """`frame` rewritten as `r` says (joined from slices: cheaper than a bytearray)."""
    eth, l3, ttl, v4, _ = r
    if ttl < 0:
        return eth + frame[12:]
    if not v4:
        if len(frame) <= l3 + 7:
            return eth + frame[12:]
        return b"".join((eth, frame[12 : l3 + 7], bytes((ttl,)), frame[l3 + 8 :]))
    if len(frame) < l3 + 12:
        return eth + frame[12:]
    p = frame[l3 + 9]
    old = (frame[l3 + 8] << 8) | p
    c = (frame[l3 + 10] << 8) | frame[l3 + 11]
    s = (~c & 0xFFFF) + (~old & 0xFFFF) + ((ttl << 8) | p)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    c = ~s & 0xFFFF
    return b"".join((eth, frame[12 : l3 + 8], bytes((ttl, p, c >> 8, c & 0xFF)), frame[l3 + 12 :]))


def apply_batch(r: Rewrite, frames: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`apply` to each (virtio-net header, frame) of an entry's batch, in one loop."""
    eth, l3, ttl, v4, _ = r
    if ttl < 0 or not v4:
        return [(h, apply(r, f)) for h, f in frames]
    a, b, c0, c1, tail = l3 + 8, l3 + 9, l3 + 10, l3 + 11, l3 + 12
    hi = ttl << 8
    join = b"".join
    out = []
    for h, f in frames:
        if len(f) < tail:
            out.append((h, apply(r, f)))
            continue
        p = f[b]
        s = (~((f[c0] << 8) | f[c1]) & 0xFFFF) + (~((f[a] << 8) | p) & 0xFFFF) + (hi | p)
        s = (s & 0xFFFF) + (s >> 16)
        s = ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
        out.append((h, join((eth, f[12:a], bytes((ttl, p, s >> 8, s & 0xFF)), f[tail:]))))
    return out
