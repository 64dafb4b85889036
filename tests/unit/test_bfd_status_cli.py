"""`vnet get bfd_statuses` against a real API on loopback: each chassis' BFD sessions,
by peer name, as the controller stored them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

runner = CliRunner()
MODEL = """
chassis:
  - {name: hv1, id: c1, underlay: 192.0.2.1}
  - {name: hv2, id: c2, underlay: 192.0.2.2}
  - {name: hv3, id: c3, underlay: 192.0.2.3}
"""


def test_get_bfd_statuses_lists_each_chassis_sessions_by_peer_name(tmp_path: Path) -> None:
    with Served(Controller(SqliteStore())) as s:
        f = tmp_path / "model.yaml"
        f.write_text(MODEL)
        r = runner.invoke(app, ["apply", "-f", str(f), "--api", s.url])
        assert r.exit_code == 0, r.output
        s.ctl.nb.report_bfd("c1", {"c2": "up", "c3": "down"})
        r = runner.invoke(app, ["get", "bfd_statuses", "--api", s.url])
        assert r.exit_code == 0, r.output
        (row,) = [line.split() for line in r.output.splitlines() if line.split()[:1] == ["hv1"]]
        assert row == ["hv1", "hv2=up,", "hv3=down"]
        r = runner.invoke(app, ["get", "bfd_statuses", "-o", "json", "--api", s.url])
        assert [(o["id"], o["sessions"]) for o in json.loads(r.output)] == [
            ("c1", {"c2": "up", "c3": "down"})
        ]
