"""Tuple-space search classifier (after Open vSwitch's `lib/classifier.c`).

Rules are grouped into subtables by their mask signature (which fields, with
which masks).  Within a subtable a rule is found by one dict lookup of the
packet's key under that mask.  Subtables are visited in descending order of
the highest priority they hold, and the search stops as soon as the best match
found so far outranks every subtable left (early exit) -- with a handful of
masks most packets touch one or two subtables whatever the number of rules.

Each subtable compiles its masked-key function once, as Python source
(`lambda k, c=0: (k[19] & 0xffffff00, k[29])`): one call, no per-field loop.
`c` is the conjunction id (`conj_id`), the one matchable value that is not
in the key: 0 for a packet, a conjunction's id while its flow is looked up.

Conjunctive matches are Open vSwitch's, step for step (`classifier_lookup__`).
A rule whose actions are `conjunction(id,k/n)` is a clause, not a flow: when
a subtable's best match is a clause it is a "soft" match.  If the best
ordinary ("hard") match outranks every soft one, it is the answer -- a table
without clauses takes only that path.  Otherwise, among the soft matches of
the highest priority, a bitmap per id collects clause numbers (starting from
the n of the first clause seen for that id, with a conjunction of more
clauses than there are soft matches skipped); the first id whose bitmap fills
up is looked up again with `conj_id` = id and conjunctions off, and the best
hard match of that lookup (usually the `conj_id=id` flow, but an ordinary
flow of higher priority wins) is the answer.  If none completes, each of
those soft matches makes way for the next-lower-priority rule with the same
match (a hard one may now win), and the search repeats below.  So clauses
count only with clauses of their own priority, a higher-priority ordinary
flow still wins, and clauses below a matching ordinary flow do not count.
A clause hides the lower-priority rules of identical match from the
`conj_id` lookup, as in Open vSwitch.  One deliberate difference: Open
vSwitch starts a 64-clause conjunction's bitmap full (`UINT64_MAX << (64 &
63)`), so one clause of it completes it; here all 64 are needed.

Cost model: lookup is O(number of subtables visited); insert/remove are O(1)
plus a re-sort of the subtable order when a subtable's max priority changes.
Ties between equal-priority overlapping rules resolve to the one inserted
first, as OpenFlow leaves it undefined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from .actions import ActionError, Conjunction, check_conjunctions
from .fields import CONJ_ID
from .flow import Instructions, Rule

__all__ = ["Classifier", "ConjMatch", "check_clause"]

KeyFn = Callable[..., tuple[int, ...]]
_ALL_CLAUSES = (1 << 64) - 1


def _compile(signature: tuple[tuple[int, int], ...], full: dict[int, int]) -> KeyFn:
    parts = []
    for slot, mask in signature:
        if slot == CONJ_ID:
            parts.append("c")  # not maskable
        elif mask == full.get(slot):
            parts.append(f"k[{slot}]")
        else:
            parts.append(f"k[{slot}] & {mask:#x}")
    src = "lambda k, c=0: (" + "".join(p + ", " for p in parts) + ")"
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


class _ConjSet(NamedTuple):
    """A clause rule's conjunctions: (id, clause index from 0, n), and the smallest n."""

    conjs: tuple[tuple[int, int, int], ...]
    min_n: int


class ConjMatch(NamedTuple):
    """The conjunction a lookup matched: its id, the clauses' priority, and the clause
    rules that filled it, each with its `k` and `n` (what the trace shows)."""

    conj_id: int
    priority: int
    clauses: tuple[tuple[Rule, int, int], ...]


def check_clause(ins: Instructions) -> tuple[Conjunction, ...]:
    """A flow's conjunctions (it is a clause), () for an ordinary flow.  ActionError
    where Open vSwitch refuses: a conjunction in write-actions, or with any other
    action or instruction than notes."""
    for a in ins.write:
        if isinstance(a, Conjunction):
            raise ActionError(a.format(), "is not allowed in write_actions")
    others = [f"meter:{ins.meter}"] if ins.meter is not None else []
    if ins.clear:
        others.append("clear_actions")
    others += [f"write_actions({a.format()})" for a in ins.write]
    if ins.metadata is not None:
        others.append("write_metadata")
    if ins.goto is not None:
        others.append(f"goto_table:{ins.goto}")
    return check_conjunctions(ins.apply, others)


def _conj_set(rule: Rule) -> _ConjSet | None:
    conjs = tuple(
        (a.conj_id, a.clause - 1, a.n_clauses)
        for a in rule.instructions.apply
        if isinstance(a, Conjunction)
    )
    if not conjs:
        return None
    return _ConjSet(conjs, min(n for _i, _k, n in conjs))


def _complete(cs: _ConjSet, max_n: int, bits: dict[int, int]) -> int | None:
    """Add a soft match's clauses to the per-id bitmaps; the first id it completes.
    `max_n` is the number of soft matches at this priority (OVS's max_n_clauses)."""
    if max_n < cs.min_n:
        return None
    for conj_id, clause, n in cs.conjs:
        if n > max_n:
            continue
        b = bits.get(conj_id)
        if b is None:
            b = _ALL_CLAUSES ^ ((1 << n) - 1)  # the bits past n start set
        b |= 1 << clause
        bits[conj_id] = b
        if b == _ALL_CLAUSES:
            return conj_id
    return None


# a soft match: the clause rule, its bucket, and its place there
_Soft = tuple[Rule, list[Rule], int]


class Classifier:
    def __init__(self, full_masks: dict[int, int] | None = None) -> None:
        self._full = full_masks or {}
        self._subtables: dict[tuple[tuple[int, int], ...], _Subtable] = {}
        self._order: list[_Subtable] = []
        self._clauses: dict[Rule, _ConjSet] = {}

    def __len__(self) -> int:
        return sum(st.count for st in self._order)

    @property
    def subtable_count(self) -> int:
        return len(self._order)

    @property
    def clause_count(self) -> int:
        return len(self._clauses)

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
        self.refresh(rule)
        if rule.priority > st.max_priority:
            st.max_priority = rule.priority
            self._resort()
        elif st.count == 1:
            self._resort()

    def refresh(self, rule: Rule) -> None:
        """Re-read whether `rule` is a clause (after a modify changed its actions)."""
        cs = _conj_set(rule)
        if cs is None:
            self._clauses.pop(rule, None)
        else:
            self._clauses[rule] = cs

    def remove(self, rule: Rule) -> None:
        m = rule.flow.match
        st = self._subtables[m.signature]
        bucket = st.buckets[m.values]
        bucket.remove(rule)
        self._clauses.pop(rule, None)
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
        if self._clauses:
            return self._lookup_conjunctive(key, None)
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

    def lookup_explained(self, key: Sequence[int]) -> tuple[Rule | None, ConjMatch | None]:
        """`lookup`, and the conjunction that led to the rule if one did (for traces)."""
        if not self._clauses:
            return self.lookup(key), None
        found: list[ConjMatch] = []
        rule = self._lookup_conjunctive(key, found)
        return rule, (found[0] if found else None)

    def _lookup_hard(self, key: Sequence[int], conj_id: int) -> Rule | None:
        """The best non-clause rule for `key` with `conj_id` set (conjunctions off)."""
        clauses = self._clauses
        best: Rule | None = None
        best_pri = -1
        for st in self._order:
            if st.max_priority <= best_pri:
                break
            bucket = st.buckets.get(st.key_fn(key, conj_id))
            if bucket is not None:
                r = bucket[0]
                if r.priority > best_pri and r not in clauses:
                    best = r
                    best_pri = r.priority
        return best

    def _lookup_conjunctive(self, key: Sequence[int], found: list[ConjMatch] | None) -> Rule | None:
        clauses = self._clauses
        hard: Rule | None = None
        hard_pri = -1
        soft: list[_Soft] = []
        soft_pri = -1
        for st in self._order:
            if st.max_priority <= hard_pri:
                break
            bucket = st.buckets.get(st.key_fn(key))
            if bucket is None:
                continue
            r = bucket[0]
            if r.priority <= hard_pri:
                continue
            if r in clauses:
                soft.append((r, bucket, 0))
                if r.priority > soft_pri:
                    soft_pri = r.priority
            else:
                hard, hard_pri = r, r.priority
        if hard_pri >= soft_pri:
            return hard
        while True:
            soft = [s for s in soft if s[0].priority > hard_pri]
            if not soft:
                return hard
            soft_pri = max(s[0].priority for s in soft)
            top = [s for s in soft if s[0].priority == soft_pri]
            bits: dict[int, int] = {}
            for s in top:
                conj_id = _complete(clauses[s[0]], len(top), bits)
                if conj_id is None:
                    continue
                rule = self._lookup_hard(key, conj_id)
                if rule is not None:
                    if found is not None:
                        found.append(_explain(conj_id, soft_pri, top, clauses))
                    return rule
            # none completed (or no flow took it): each of these makes way for the
            # next-lower-priority rule with the same match
            below: list[_Soft] = [s for s in soft if s[0].priority != soft_pri]
            for _r, bucket, i in top:
                if i + 1 < len(bucket):
                    nxt = bucket[i + 1]
                    if nxt in clauses:
                        below.append((nxt, bucket, i + 1))
                    elif nxt.priority > hard_pri:
                        hard, hard_pri = nxt, nxt.priority
            soft = below

    def rules(self) -> Iterator[Rule]:
        for st in self._order:
            for bucket in st.buckets.values():
                yield from bucket


def _explain(
    conj_id: int, priority: int, top: list[_Soft], clauses: dict[Rule, _ConjSet]
) -> ConjMatch:
    used = []
    for r, _bucket, _i in top:
        for cid, clause, n in clauses[r].conjs:
            if cid == conj_id:
                used.append((r, clause + 1, n))
    used.sort(key=lambda u: u[1])
    return ConjMatch(conj_id, priority, tuple(used))
