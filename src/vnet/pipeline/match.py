"""Matches: a set of (field slot, value, mask) with OpenFlow's prerequisite rules.

A `Match` is immutable and canonical: items sorted by slot, values already
masked, a zero mask dropped.  Two matches that select the same packets by the
same fields compare equal, which is what strict flow-mods and the reconciler
need.  `signature` (slots and masks) names the classifier subtable a match
belongs to; `covers` is the non-strict flow-mod relation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .fields import BY_INDEX, Field, FieldError, lookup

__all__ = ["Match", "PrereqError"]


class PrereqError(FieldError):
    """A field used without the match that makes it meaningful (OpenFlow BAD_PREREQ)."""


@dataclass(frozen=True, slots=True)
class Match:
    items: tuple[tuple[int, int, int], ...] = ()

    @staticmethod
    def build(pairs: Iterable[tuple[Field, int, int]]) -> Match:
        """Canonical match from (field, value, mask); checks prerequisites and conflicts."""
        by_slot: dict[int, tuple[int, int]] = {}
        used: list[Field] = []
        for f, value, mask in pairs:
            if mask == 0:
                continue
            prev = by_slot.get(f.index)
            if prev is not None and prev != (value & mask, mask):
                raise FieldError(f.name, "is given twice with different values")
            by_slot[f.index] = (value & mask, mask)
            used.append(f)
        m = Match(tuple(sorted((i, v, mk) for i, (v, mk) in by_slot.items())))
        for f in used:
            m.check_prereqs(f)
        return m

    @staticmethod
    def of(**fields: int | tuple[int, int]) -> Match:
        """Convenience for code and tests: Match.of(eth_type=0x800, ipv4_dst=(v, mask))."""
        pairs = []
        for name, spec in fields.items():
            f = lookup(name)
            value, mask = spec if isinstance(spec, tuple) else (spec, f.full_mask)
            pairs.append((f, value, mask))
        return Match.build(pairs)

    def check_prereqs(self, f: Field) -> None:
        have = {i: (v, m) for i, v, m in self.items}
        for p in f.prereqs:
            pf = lookup(p.field)
            vm = have.get(pf.index)
            ok = False
            if vm is not None:
                v, m = vm
                if m == pf.full_mask:
                    ok = v in p.values
                elif pf.kind == "vlan_vid":
                    ok = bool(m & v & 0x1000) and min(p.values) >= 0x1000
            if not ok:
                want = ", ".join(pf.format(x) for x in sorted(p.values)[:4])
                if len(p.values) > 4:
                    want += ", ..."
                raise PrereqError(f.name, f"requires {pf.name} in {{{want}}} in the same match")

    # -- queries --------------------------------------------------------------
    @property
    def signature(self) -> tuple[tuple[int, int], ...]:
        return tuple((i, m) for i, _v, m in self.items)

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(v for _i, v, _m in self.items)

    def get(self, name: str) -> tuple[int, int] | None:
        idx = lookup(name).index
        for i, v, m in self.items:
            if i == idx:
                return v, m
        return None

    def matches(self, key: Sequence[int], conj_id: int = 0) -> bool:
        """Whether the packet `key` matches; `conj_id` stands for the slot past the
        key's end (`fields.CONJ_ID`): 0 for a packet, a conjunction's id while the
        classifier looks for that conjunction's flow."""
        n = len(key)
        return all(((key[i] if i < n else conj_id) & m) == v for i, v, m in self.items)

    def covers(self, other: Match) -> bool:
        """True when every packet `other` matches is matched by self (non-strict semantics)."""
        theirs = {i: (v, m) for i, v, m in other.items}
        for i, v, m in self.items:
            t = theirs.get(i)
            if t is None:
                return False
            v2, m2 = t
            if m2 & m != m or v2 & m != v:
                return False
        return True

    def fields(self) -> list[tuple[Field, int, int]]:
        return [(BY_INDEX[i], v, m) for i, v, m in self.items]

    def __bool__(self) -> bool:
        return bool(self.items)
