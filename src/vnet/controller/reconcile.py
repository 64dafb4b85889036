"""Desired state vs installed state: the difference as mods, and drift.

What a chassis' switch should hold is one `Desired`: its flows, groups and
meters (as OVN's `ofctrl` keeps desired flows, groups and meters).  `diff`
compares it with what is installed and returns one ordered list of mods,
which one southbound apply sends: groups and meters added or changed first
(a flow that refers to one never arrives before it), then the flows, then
the groups and meters nobody refers to any more.

A flow's identity in a table is (table, priority, match) -- what OpenFlow's
strict commands address.  `diff` returns, for the installed side to become
the desired side: ADD for a missing flow or one whose cookie, instructions
or timeouts differ (an ADD replaces a flow whole, cookie included, which a
MODIFY would not), then DELETE_STRICT for flows nobody wants.  Adds come
before deletes so traffic a replaced flow carried is never left without a
flow.  Equal sides give no flow-mods at all: a controller restart or a
switch reconnect against an unchanged model touches nothing.

Flows that are the very same objects on both sides (what the compiler's
memo handed out again) are equal without a look; the rest are compared on
a canonical form (`canon`): a full-width register load and
a set-field of that register are the same action, whichever way a switch
reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import count

from ..datapath.meters import MeterConfig
from ..pipeline.actions import Action, RegLoad, SetField
from ..pipeline.fields import BY_INDEX
from ..pipeline.flow import Flow, FlowMod, FlowModCommand, Instructions
from ..pipeline.groups import GroupDesc, GroupMod, GroupModCommand

__all__ = ["Desired", "Drift", "MeterMod", "Mod", "canon", "diff", "drift", "flow_diff"]


@dataclass(frozen=True)
class MeterMod:
    command: str  # add | modify | delete, as the switch's meter table takes them
    meter: MeterConfig


Mod = FlowMod | GroupMod | MeterMod


@dataclass
class Desired:
    """What one switch holds, or should: flows, groups and meters."""

    flows: list[Flow] = field(default_factory=list)
    groups: list[GroupDesc] = field(default_factory=list)
    meters: list[MeterConfig] = field(default_factory=list)


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


def _canon_group(g: GroupDesc) -> GroupDesc:
    buckets = tuple(
        replace(b, actions=tuple(_canon_action(a) for a in b.actions)) for b in g.buckets
    )
    return replace(g, buckets=buckets)


def diff(desired: Desired, installed: Desired) -> list[Mod]:
    """The mods that make `installed` equal `desired`, in the order they may be sent."""
    gw = {g.group_id: _canon_group(g) for g in desired.groups}
    gh = {g.group_id: _canon_group(g) for g in installed.groups}
    mw = {m.meter_id: m for m in desired.meters}
    mh = {m.meter_id: m for m in installed.meters}
    before: list[Mod] = [
        GroupMod(GroupModCommand.ADD if gid not in gh else GroupModCommand.MODIFY, g)
        for gid, g in sorted(gw.items())
        if gh.get(gid) != g
    ]
    before += [
        MeterMod("add" if mid not in mh else "modify", m)
        for mid, m in sorted(mw.items())
        if mh.get(mid) != m
    ]
    after: list[Mod] = [
        GroupMod(GroupModCommand.DELETE, GroupDesc(gid, g.type))
        for gid, g in sorted(gh.items())
        if gid not in gw
    ]
    after += [MeterMod("delete", MeterConfig(mid)) for mid in sorted(mh) if mid not in mw]
    return [*before, *flow_diff(desired.flows, installed.flows), *after]


def flow_diff(desired: Sequence[Flow], installed: Sequence[Flow]) -> list[FlowMod]:
    # the very same flow object on both sides is unchanged: the compiler's memo hands
    # out the same flows while their inputs stay, so a one-port change compares only
    # the few flows it rebuilt (a side's keys are distinct: one flow per key)
    wpos = dict(zip(map(id, desired), count()))
    hpos = dict(zip(map(id, installed), count()))
    desired = [desired[wpos[i]] for i in sorted(wpos.keys() - hpos.keys(), key=wpos.__getitem__)]
    installed = [installed[hpos[i]] for i in sorted(hpos.keys() - wpos.keys(), key=hpos.__getitem__)]  # fmt: skip
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
