"""Desired flows vs installed flows: the difference as flow-mods, and drift.

A flow's identity in a table is (table, priority, match) -- what OpenFlow's
strict commands address.  `diff` returns, for the installed side to become
the desired side: ADD for a missing flow or one whose cookie, instructions
or timeouts differ (an ADD replaces a flow whole, cookie included, which a
MODIFY would not), then DELETE_STRICT for flows nobody wants.  Adds come
before deletes so traffic a replaced flow carried is never left without a
flow.  Equal sides give no flow-mods at all: a controller restart or a
switch reconnect against an unchanged model touches nothing.

Comparison is on a canonical form (`canon`): a full-width register load and
a set-field of that register are the same action, whichever way a switch
reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..pipeline.actions import Action, RegLoad, SetField
from ..pipeline.fields import BY_INDEX
from ..pipeline.flow import Flow, FlowMod, FlowModCommand, Instructions

__all__ = ["Drift", "canon", "diff", "drift"]

Key = tuple[int, int, object]


def _canon_action(a: Action) -> Action:
    if isinstance(a, RegLoad) and a.ofs == 0 and BY_INDEX[a.slot].bits == a.nbits:
        return SetField(a.slot, a.value)
    return a


def canon(f: Flow) -> tuple[int, Instructions, int, int, int]:
    ins = f.instructions
    ins = Instructions(
        apply=tuple(_canon_action(a) for a in ins.apply),
        meter=ins.meter,
        clear=ins.clear,
        write=tuple(_canon_action(a) for a in ins.write),
        metadata=ins.metadata,
        goto=ins.goto,
    )
    return (f.cookie, ins, f.idle_timeout, f.hard_timeout, f.flags & ~1)


def key(f: Flow) -> Key:
    return (f.table, f.priority, f.match)


def _index(flows: Iterable[Flow]) -> dict[Key, Flow]:
    return {key(f): f for f in flows}


def diff(desired: Sequence[Flow], installed: Sequence[Flow]) -> list[FlowMod]:
    want, have = _index(desired), _index(installed)
    adds = [
        FlowMod(FlowModCommand.ADD, f)
        for k, f in want.items()
        if k not in have or canon(have[k]) != canon(f)
    ]
    dels = [FlowMod(FlowModCommand.DELETE_STRICT, f) for k, f in have.items() if k not in want]
    return adds + dels


@dataclass(frozen=True)
class Drift:
    """One difference between the model and a switch, with where the flow came from."""

    kind: str  # extra | missing | differs
    flow: Flow  # the installed flow for extra, the desired one otherwise
    installed: Flow | None
    origin: str


def drift(
    desired: Sequence[Flow], installed: Sequence[Flow], explain: Callable[[Flow], str]
) -> list[Drift]:
    """Flows present but not desired, desired but missing, and present but different."""
    want, have = _index(desired), _index(installed)
    out: list[Drift] = []
    for k, f in want.items():
        got = have.get(k)
        if got is None:
            out.append(Drift("missing", f, None, f.origin))
        elif canon(got) != canon(f):
            out.append(Drift("differs", f, got, f.origin))
    for k, f in have.items():
        if k not in want:
            out.append(Drift("extra", f, f, explain(f)))
    return out
