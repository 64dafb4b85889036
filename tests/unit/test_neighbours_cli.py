"""`vnet get neighbours` against a real API on loopback: a router's learned neighbours
listed by name, and a file that names the kind refused whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

runner = CliRunner()
MODEL = """
tenants: [{name: blue}]
networks: [{name: net, tenant: blue}]
subnets: [{name: s, tenant: blue, network: net, cidr: 10.0.0.0/24}]
routers: [{name: edge, tenant: blue, interfaces: [{subnet: s}]}]
"""


def test_get_neighbours_lists_what_was_learned_and_a_file_cannot_write_them(
    tmp_path: Path,
) -> None:
    with Served(Controller(SqliteStore())) as s:
        f = tmp_path / "model.yaml"
        f.write_text(MODEL)
        r = runner.invoke(app, ["apply", "-f", str(f), "--api", s.url])
        assert r.exit_code == 0, r.output
        st = s.ctl.nb.state()
        (router,) = st.all("router")
        (net,) = st.all("network")
        s.ctl.nb.learn(router.id, net.id, "10.0.0.77", "02:aa:bb:cc:dd:ee", time.time() - 42)
        r = runner.invoke(app, ["get", "neighbours", "--api", s.url])
        assert r.exit_code == 0, r.output
        (row,) = [line.split() for line in r.output.splitlines() if "10.0.0.77" in line]
        assert row[:4] == ["edge", "net", "10.0.0.77", "02:aa:bb:cc:dd:ee"]
        assert row[4].endswith("s") and 40 <= int(row[4][:-1]) <= 60  # heard 42 s ago
        bad = tmp_path / "bad.yaml"
        bad.write_text(MODEL + "neighbours: [{name: x, router: edge, network: net, "
                       "ip: 10.0.0.78, mac: '02:00:00:00:00:01'}]\n")  # fmt: skip
        r = runner.invoke(app, ["apply", "-f", str(bad), "--api", s.url])
        assert r.exit_code != 0 and "neighbours" in r.output
        assert "learned and written by the controller" in r.output
        r = runner.invoke(app, ["get", "neighbours", "-o", "json", "--api", s.url])
        assert [n["ip"] for n in json.loads(r.output)] == ["10.0.0.77"]  # nothing written
