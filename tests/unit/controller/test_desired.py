"""Desired state is flows, groups and meters: one diff, one southbound apply."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vnet.controller.reconcile import Desired, MeterMod, diff
from vnet.controller.service import Controller, LocalSouthbound, Session
from vnet.datapath import Switch
from vnet.datapath.meters import Band, MeterConfig
from vnet.model.rules import State
from vnet.pipeline.actions import Output
from vnet.pipeline.flow import FlowMod
from vnet.pipeline.groups import Bucket, GroupDesc, GroupMod, GroupModCommand, GroupType
from vnet.pipeline.ofctl import parse_flow
from vnet.store import SqliteStore

from .test_controller import MODEL, over_openflow, switch_for

GROUP = GroupDesc(7, GroupType.SELECT, (Bucket((Output(1),)), Bucket((Output(2),))))
METER = MeterConfig(3, 1, (Band(1000),))
USES = parse_flow("table=5,priority=300,reg7=0x99,actions=group:7").flow


def _kinds(mods: list[Any]) -> list[str]:
    out = []
    for m in mods:
        if isinstance(m, FlowMod):
            out.append(f"flow {m.command.value}")
        elif isinstance(m, GroupMod):
            out.append(f"group {m.command.value}")
        else:
            out.append(f"meter {m.command}")
    return out


def test_groups_and_meters_come_before_the_flows_using_them_and_go_after() -> None:
    empty = Desired()
    want = Desired([USES], [GROUP], [METER])
    assert _kinds(diff(want, empty)) == ["group add", "meter add", "flow add"]
    assert diff(want, Desired([USES], [GROUP], [METER])) == []
    assert _kinds(diff(empty, want)) == ["flow delete_strict", "group delete", "meter delete"]
    changed = Desired([USES], [GroupDesc(7, GroupType.SELECT, GROUP.buckets[:1])], [METER])
    (mod,) = diff(changed, want)
    assert isinstance(mod, GroupMod) and mod.command == GroupModCommand.MODIFY
    faster = MeterConfig(3, 1, (Band(2000),))
    assert diff(Desired([USES], [GROUP], [faster]), want) == [MeterMod("modify", faster)]


def _with_group(monkeypatch: pytest.MonkeyPatch, extra: list[Any]) -> None:
    """The controller's desired state, plus what `extra` holds: a group, a meter, a flow."""
    plain = Controller.desired

    def desired(self: Controller, state: State, sess: Session) -> Desired | None:
        d = plain(self, state, sess)
        if d is not None and extra:
            d = Desired([*d.flows, USES], [GROUP], [METER])
        return d

    monkeypatch.setattr(Controller, "desired", desired)


def _has(sw: Switch) -> tuple[bool, bool, bool]:
    flows = [r.flow for r in sw.pipeline.rules()]
    return (7 in sw.pipeline.groups, 3 in sw.meters.meters, USES in flows)


def test_in_process_switch_gets_groups_and_meters_and_a_restart_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra: list[Any] = [True]
    _with_group(monkeypatch, extra)

    async def main() -> None:
        store = SqliteStore()
        ctl = Controller(store)
        ctl.nb.apply(MODEL)
        sw = switch_for(ctl)
        sess = await ctl.attach(LocalSouthbound(sw))
        assert _has(sw) == (True, True, True)
        again = Controller(store)
        await again.attach(LocalSouthbound(sw))
        assert again.flow_mods_total == 0
        extra.clear()
        sess.full = True
        assert await ctl.sync(sess) == 3  # the flow, then the group and the meter
        assert _has(sw) == (False, False, False)

    asyncio.run(main())


def test_over_openflow_groups_and_meters_are_installed_read_back_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra: list[Any] = [True]
    _with_group(monkeypatch, extra)

    async def main() -> None:
        store = SqliteStore()
        ctl = Controller(store)
        ctl.nb.apply(MODEL)
        sw = switch_for(ctl)
        async with over_openflow(ctl, sw):
            assert _has(sw) == (True, True, True)
            # a full comparison reads groups and meters back: nothing to send
            (sess,) = ctl.sessions.values()
            sess.full = True
            assert await ctl.sync(sess) == 0
            extra.clear()
            sess.full = True
            assert await ctl.sync(sess) == 3
            assert _has(sw) == (False, False, False)

    asyncio.run(main())
