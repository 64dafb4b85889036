"""Tuple-space search classifier (after Open vSwitch's `lib/classifier.c`).

Rules are grouped into subtables by their mask signature (which fields, with
which masks).  Within a subtable a rule is found by one dict lookup of the
packet's key under that mask.  Subtables are visited in descending order of
the highest priority they hold, and the search stops as soon as the best match
found so far outranks every subtable left (early exit) -- with a handful of
masks most packets touch one or two subtables whatever the number of rules.

Each subtable compiles its masked-key function once, as Python source
(`lambda k: (k[19] & 0xffffff00, k[29])`): one call, no per-field loop.

Cost model: lookup is O(number of subtables visited); insert/remove are O(1)
plus a re-sort of the subtable order when a subtable's max priority changes.
Ties between equal-priority overlapping rules resolve to the one inserted
first, as OpenFlow leaves it undefined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from .flow import Rule

__all__ = ["Classifier"]

KeyFn = Callable[[Sequence[int]], tuple[int, ...]]


def _compile(signature: tuple[tuple[int, int], ...], full: dict[int, int]) -> KeyFn:
    parts = []
    for slot, mask in signature:
        if mask == full.get(slot):
            parts.append(f"k[{slot}]")
        else:
            parts.append(f"k[{slot}] & {mask:#x}")
    src = "lambda k: (" + "".join(p + ", " for p in parts) + ")"
    fn: KeyFn = eval(src)  # generated from integers only
    return fn


class _Subtable:
    __slots__ = ("buckets", "count", "key_fn", "max_priority", "signature")

    def __init__(self, signature: tuple[tuple[int, int], ...], full: dict[int, int]) -> None:
        self.signature = signature
        self.key_fn = _compile(signature, full)
        self.buckets: dict[tuple[int, ...], list[Rule]] = {}
        self.max_priority = -1
        self.count = 0


class Classifier:
    def __init__(self, full_masks: dict[int, int] | None = None) -> None:
        self._full = full_masks or {}
        self._subtables: dict[tuple[tuple[int, int], ...], _Subtable] = {}
        self._order: list[_Subtable] = []

    def __len__(self) -> int:
        return sum(st.count for st in self._order)

    @property
    def subtable_count(self) -> int:
        return len(self._order)

    def insert(self, rule: Rule) -> None:
        m = rule.flow.match
        sig = m.signature
        st = self._subtables.get(sig)
        if st is None:
            st = _Subtable(sig, self._full)
            self._subtables[sig] = st
        bucket = st.buckets.setdefault(m.values, [])
        # keep each bucket sorted by descending priority, stable for equal ones
        i = len(bucket)
        while i > 0 and bucket[i - 1].priority < rule.priority:
            i -= 1
        bucket.insert(i, rule)
        st.count += 1
        if rule.priority > st.max_priority:
            st.max_priority = rule.priority
            self._resort()
        elif st.count == 1:
            self._resort()

    def remove(self, rule: Rule) -> None:
        m = rule.flow.match
        st = self._subtables[m.signature]
        bucket = st.buckets[m.values]
        bucket.remove(rule)
        if not bucket:
            del st.buckets[m.values]
        st.count -= 1
        if st.count == 0:
            del self._subtables[m.signature]
            self._order.remove(st)
        elif rule.priority == st.max_priority:
            st.max_priority = max(b[0].priority for b in st.buckets.values())
            self._resort()

    def _resort(self) -> None:
        self._order = sorted(self._subtables.values(), key=lambda s: -s.max_priority)

    def lookup(self, key: Sequence[int]) -> Rule | None:
        best: Rule | None = None
        best_pri = -1
        for st in self._order:
            if st.max_priority <= best_pri:
                break
            bucket = st.buckets.get(st.key_fn(key))
            if bucket is not None:
                r = bucket[0]
                if r.priority > best_pri:
                    best = r
                    best_pri = r.priority
        return best

    def rules(self) -> Iterator[Rule]:
        for st in self._order:
            for bucket in st.buckets.values():
                yield from bucket
