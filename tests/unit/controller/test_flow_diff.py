"""flow_diff: flows the compiler handed out again are not compared one by one."""

from __future__ import annotations

import pytest

from vnet.controller import reconcile
from vnet.controller.reconcile import flow_diff
from vnet.pipeline.flow import FlowModCommand
from vnet.pipeline.ofctl import parse_flow


def _flows(n: int, out: int = 1) -> list[object]:
    return [
        parse_flow(f"table=3,priority=100,reg6={i},actions=output:{out}").flow for i in range(n)
    ]


def test_the_same_flow_objects_are_equal_without_a_comparison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = _flows(500)
    desired = list(installed)
    desired[7] = parse_flow("table=3,priority=100,reg6=7,actions=output:2").flow  # changed
    desired[9] = parse_flow("table=3,priority=100,reg6=9,actions=output:1").flow  # equal anew
    gone = installed[11]
    del desired[11]
    desired.append(parse_flow("table=3,priority=100,reg6=999,actions=output:1").flow)
    calls = []
    canon = reconcile.canon
    monkeypatch.setattr(reconcile, "canon", lambda f: calls.append(f) or canon(f))
    mods = flow_diff(desired, installed)  # type: ignore[arg-type]
    got = [(m.command, m.flow.match) for m in mods]
    assert got == [
        (FlowModCommand.ADD, desired[7].match),  # type: ignore[attr-defined]
        (FlowModCommand.ADD, desired[-1].match),  # type: ignore[attr-defined]
        (FlowModCommand.DELETE_STRICT, gone.match),  # type: ignore[attr-defined]
    ]
    assert len(calls) == 4  # flows 7 and 9, each side: not the 498 shared
