"""`vnet get routes ROUTER`: a router's routing table through the command, against a
real API on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

ROUTED = Path(__file__).resolve().parent / "model" / "routed.yaml"
runner = CliRunner()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    doc = yaml.safe_load(ROUTED.read_text())
    doc["routers"][0]["routes"] += [
        {"cidr": "192.168.0.0/16", "nexthop": "10.2.0.253"},
        {"cidr": "10.2.0.0/24", "nexthop": "10.1.0.254"},
    ]
    f = tmp_path / "routed.yaml"
    f.write_text(yaml.safe_dump(doc))
    with Served(Controller(SqliteStore())) as s:
        r = runner.invoke(app, ["apply", "-f", str(f), "--api", s.url])
        assert r.exit_code == 0, r.output
        yield s


def vnet(s: Served, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, [*args, "--api", s.url], env={"COLUMNS": "250"})
    return r.exit_code, r.output


def test_get_routes_prints_the_table_with_origins(api: Served) -> None:
    code, out = vnet(api, "get", "routes", "r1", "--tenant", "shop")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "router r1 (tenant shop)"
    assert lines[1].split() == ["PREFIX", "KIND", "NEXT", "HOP", "OUT", "INSTALLED", "FROM"]
    body = [line.split() for line in lines[2:] if line.strip()]
    assert body[0] == ["10.1.0.0/24", "connected", "direct", "1:", "web-v4", "(web)", "yes",
                       "router", "r1", "interfaces[0]", "(subnet", "web-v4)"]  # fmt: skip
    shadowed = next(b for b in body if b[:2] == ["10.2.0.0/24", "static"])
    assert shadowed[2:5] == ["10.1.0.254", "-", "no:"]
    assert " ".join(shadowed[5:]).startswith("shadowed by the connected route 10.2.0.0/24")
    # ECMP: one line a next hop, each with its out interface and the entry it came from
    i = next(n for n, b in enumerate(body) if b[:2] == ["192.168.0.0/16", "ecmp"])
    assert body[i][2:] == ["10.2.0.253", "3:", "db-v4", "(db)", "yes", "router", "r1",
                           "routes[1]", "(via", "10.2.0.253)"]  # fmt: skip
    assert body[i + 1] == ["10.2.0.254", "3:", "db-v4", "(db)", "router", "r1", "routes[0]",
                           "(via", "10.2.0.254)"]  # fmt: skip
    assert any(b[0] == "fd00:1::/64" for b in body)


def test_get_routes_as_json_is_the_apis_answer(api: Served) -> None:
    code, out = vnet(api, "get", "routes", "r1", "-o", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["router"] == "r1" and doc["tenant"] == "shop"
    kinds = [(r["cidr"], r["kind"], r["installed"]) for r in doc["routes"]]
    assert ("192.168.0.0/16", "ecmp", True) in kinds and ("10.2.0.0/24", "static", False) in kinds
    code, out = vnet(api, "get", "route", "r1", "-o", "yaml")
    assert code == 0 and yaml.safe_load(out) == doc


def test_a_router_down_is_said_and_bad_input_exits_2(api: Served) -> None:
    api.ctl.nb.update("router", "r1", {"admin_up": False})
    code, out = vnet(api, "get", "routes", "r1")
    assert code == 0 and "(administratively down)" in out.splitlines()[0]
    assert "no: the router is administratively down" in out
    code, out = vnet(api, "get", "routes", "nope")
    assert code == 2 and "router 'nope'" in out
    code, out = vnet(api, "get", "routes")
    assert code == 2 and "name the router" in out
