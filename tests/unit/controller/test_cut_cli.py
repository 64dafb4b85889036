"""`vnet apply --dry-run` counts the live connections a change would cut, and cuts none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.client import Client
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.store import SqliteStore
from vnet.testing.served import Served

from .test_cut import DOC, Conn, closed_to_web

runner = CliRunner()


@pytest.fixture
def live() -> Iterator[tuple[Served, Switch]]:
    """The example's model on an in-process switch, client -> web tcp/80 established."""
    ctl = Controller(SqliteStore())
    ctl.nb.apply(DOC)
    sw = Switch("hv1", fail_mode="secure")
    for o in ctl.nb.list("port"):
        sw.add_port(PortConfig(o.iface, kind="memory"), MemoryDevice(o.iface))  # type: ignore[attr-defined]
    with Served(ctl) as s:
        s.call(ctl.attach(LocalSouthbound(sw)))
        s.call(ctl.wait_synced())
        Conn(ctl, sw, "client", "web", 80).open()
        Conn(ctl, sw, "web", "db", 5432).open()
        yield s, sw


def test_a_dry_run_counts_the_connections_it_would_cut(
    live: tuple[Served, Switch], tmp_path: Path
) -> None:
    s, sw = live
    f = tmp_path / "closed.yaml"
    f.write_text(yaml.safe_dump(closed_to_web(DOC)))
    before = s.ctl.nb.state().revision
    r = runner.invoke(app, ["apply", "-f", str(f), "--dry-run", "--api", s.url], env={"COLUMNS": "250"})  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "live connections cut: 1" in r.output
    assert any(
        " ".join(line.split()).startswith("cuts client -> web tcp/80 (ct_nw_src=10.20.0.10,") for line in r.output.splitlines()
    ), r.output  # fmt: skip
    assert s.ctl.nb.state().revision == before and len(list(sw.conntrack.conns())) == 4
    with Client(s.url) as c:
        plan = c.apply(closed_to_web(DOC), dry_run=True)
        assert plan["cuts"]["count"] == 1 and plan["cuts"]["unreachable"] == {}
        (conn,) = plan["cuts"]["connections"]
        assert conn["tuple"].endswith("ct_tp_dst=80") and len(conn["entries"]) == 2
        assert {e["chassis"] for e in conn["entries"]} == {"hv1"}
        assert c.apply(DOC, dry_run=True)["cuts"]["count"] == 0
