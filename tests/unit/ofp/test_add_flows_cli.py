"""`vnet ofctl add-flows`: a file of flows over one connection, to a switch in this process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.datapath import Switch
from vnet.ofp.agent import Agent

from .agent_thread import agent_thread, memory_switch

FLOWS = """\
# the firewall's two tables
table=0,priority=100,ip,actions=ct(table=1,zone=1)

table=0,priority=10,arp,in_port=1,actions=output:2
table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2
"""


@pytest.fixture
def switch() -> Iterator[tuple[Switch, str]]:
    sw = memory_switch("t", 3)
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    with agent_thread(agent):
        yield sw, f"tcp:127.0.0.1:{agent.bound_ports()[0]}"


def test_every_flow_of_the_file_is_added(switch: tuple[Switch, str], tmp_path: Path) -> None:
    sw, target = switch
    f = tmp_path / "flows"
    f.write_text(FLOWS)
    r = CliRunner().invoke(app, ["ofctl", "add-flows", target, str(f)])
    assert r.exit_code == 0, r.output
    assert sorted((x.flow.table, x.flow.priority) for x in sw.pipeline.rules()) == [
        (0, 10), (0, 100), (1, 10)
    ]  # fmt: skip


def test_from_stdin(switch: tuple[Switch, str]) -> None:
    sw, target = switch
    r = CliRunner().invoke(app, ["ofctl", "add-flows", target, "-"], input=FLOWS)
    assert r.exit_code == 0, r.output
    assert len(sw.pipeline.rules()) == 3


def test_a_bad_line_is_named_and_nothing_is_added(
    switch: tuple[Switch, str], tmp_path: Path
) -> None:
    sw, target = switch
    f = tmp_path / "flows"
    f.write_text(FLOWS + "table=1,priority=5,ip,ct_state=+bogus,actions=drop\n")
    r = CliRunner().invoke(app, ["ofctl", "add-flows", target, str(f)])
    assert r.exit_code == 2
    assert f"{f}:6:" in r.output and "bogus" in r.output
    assert sw.pipeline.rules() == []


def test_a_flow_the_switch_refuses_is_named(switch: tuple[Switch, str], tmp_path: Path) -> None:
    sw, target = switch
    f = tmp_path / "flows"
    f.write_text("priority=1,actions=output:2\npriority=2,actions=group:77\n")
    r = CliRunner().invoke(app, ["ofctl", "add-flows", target, str(f)])
    assert r.exit_code == 1
    assert f"{f}:2:" in r.output
    assert [x.flow.priority for x in sw.pipeline.rules()] == [1]


def test_a_missing_file_is_named(switch: tuple[Switch, str], tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["ofctl", "add-flows", switch[1], str(tmp_path / "nope")])
    assert r.exit_code == 2 and "nope" in r.output
