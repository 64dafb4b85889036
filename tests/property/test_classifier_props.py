"""The tuple-space classifier against a linear scan, by hypothesis' stateful testing."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vnet.packet import flowkey as fk
from vnet.pipeline.classifier import Classifier
from vnet.pipeline.fields import FIELDS
from vnet.pipeline.flow import Flow, Rule
from vnet.pipeline.match import Match

FULL = {f.index: f.full_mask for f in FIELDS}
SLOTS = (fk.IN_PORT, fk.ETH_TYPE, fk.IPV4_DST, fk.TP_DST, fk.REG0)
MASKS = {
    fk.IN_PORT: [0xFFFFFFFF],
    fk.ETH_TYPE: [0xFFFF],
    fk.IPV4_DST: [0xFFFFFFFF, 0xFFFFFF00, 0xFFFF0000, 0xFF000000],
    fk.TP_DST: [0xFFFF, 0xFF00],
    fk.REG0: [0xFFFFFFFF, 0xF, 0xF0],
}
VALUES = {
    fk.IN_PORT: st.integers(1, 3),
    fk.ETH_TYPE: st.sampled_from([0x0800, 0x0806]),
    fk.IPV4_DST: st.sampled_from([0x0A000001, 0x0A000002, 0x0A000102, 0x0B000001]),
    fk.TP_DST: st.sampled_from([80, 443, 8080]),
    fk.REG0: st.integers(0, 0x3F),
}


@st.composite
def matches(draw: st.DrawFn) -> Match:
    items = []
    for slot in draw(st.sets(st.sampled_from(SLOTS), max_size=4)):
        mask = draw(st.sampled_from(MASKS[slot]))
        items.append((slot, draw(VALUES[slot]) & mask, mask))
    return Match(tuple(sorted(items)))


@st.composite
def keys(draw: st.DrawFn) -> tuple[int, ...]:
    key = [0] * fk.KEY_LEN
    for slot in SLOTS:
        key[slot] = draw(VALUES[slot])
    return tuple(key)


class ClassifierVsLinear(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.cls = Classifier(FULL)
        self.rules: dict[tuple[Match, int], Rule] = {}

    @rule(m=matches(), priority=st.integers(0, 50))
    def insert(self, m: Match, priority: int) -> None:
        ident = (m, priority)
        if ident in self.rules:
            self.cls.remove(self.rules.pop(ident))
        r = Rule(Flow(m, priority=priority))
        self.rules[ident] = r
        self.cls.insert(r)

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        if not self.rules:
            return
        ident = data.draw(st.sampled_from(sorted(self.rules, key=repr)))
        self.cls.remove(self.rules.pop(ident))

    @rule(key=keys())
    def lookup(self, key: tuple[int, ...]) -> None:
        got = self.cls.lookup(key)
        hits = [r for r in self.rules.values() if r.flow.match.matches(key)]
        if not hits:
            assert got is None
            return
        assert got is not None and got.flow.match.matches(key)
        assert got.priority == max(r.priority for r in hits)

    @invariant()
    def sizes_agree(self) -> None:
        if hasattr(self, "cls"):
            assert len(self.cls) == len(self.rules)
            assert set(map(id, self.cls.rules())) == set(map(id, self.rules.values()))


ClassifierVsLinear.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
TestClassifier = ClassifierVsLinear.TestCase
