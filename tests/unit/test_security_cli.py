"""Security groups and policies through the `vnet` command, against a real API on loopback."""

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

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples/microseg.yaml"
runner = CliRunner()


@pytest.fixture
def api() -> Iterator[Served]:
    with Served(Controller(SqliteStore())) as s:
        r = runner.invoke(app, ["apply", "-f", str(EXAMPLE), "--api", s.url])
        assert r.exit_code == 0, r.output
        yield s


def vnet(s: Served, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, [*args, "--api", s.url], env={"COLUMNS": "250"})
    return r.exit_code, r.output


def test_get_and_describe_show_names(api: Served) -> None:
    code, out = vnet(api, "get", "security_groups")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert rows["web"] == ["web", "shop", "tier=web", "web", "2"], out
    assert rows["clients"][3:] == ["client", "0"]
    code, out = vnet(api, "get", "policies")
    assert code == 0 and "protect-db" in out and "tier=db" in out and "100" in out
    code, out = vnet(api, "describe", "security-group", "db")
    doc = yaml.safe_load(out)
    assert code == 0 and doc["rules"][0]["from"] == {"group": "web"} and doc["members"] == ["db"]
    code, out = vnet(api, "get", "policy", "protect-db", "-o", "json")
    assert json.loads(out)["rules"][0]["action"] == "reject"
    code, out = vnet(api, "apply", "-f", str(EXAMPLE), "--dry-run")
    assert code == 0 and "0 object(s) would change" in out and "reachability" not in out


def test_a_dry_run_shows_the_reachability_delta(api: Served, tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["ports"][0]["labels"] = {"tier": "web"}  # client relabelled as a web server
    f = tmp_path / "relabel.yaml"
    f.write_text(yaml.safe_dump(doc))
    before = api.ctl.nb.state().revision
    code, out = vnet(api, "apply", "-f", str(f), "--dry-run")
    assert code == 0 and api.ctl.nb.state().revision == before
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert any(line.startswith("opens client db tcp/5432 reject:") for line in lines), out
    assert any(line.startswith("closes client web tcp/80 allow:") for line in lines), out
    assert "reachability: 1 opened, 2 closed" in out


def test_refusals_name_the_field_and_change_nothing(api: Served, tmp_path: Path) -> None:
    before = api.ctl.nb.state().revision
    code, out = vnet(api, "delete", "security_group", "web")
    assert code == 2 and "named by security group 'db' rule 0" in out
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["security_groups"][1]["rules"][0]["ports"] = "80-8"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(doc))
    code, out = vnet(api, "apply", "-f", str(f))
    assert code == 2 and "security_groups.1.rules.0.ports" in out and "reversed" in out
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["policies"].append({**doc["policies"][0], "name": "twin"})
    f.write_text(yaml.safe_dump(doc))
    code, out = vnet(api, "apply", "-f", str(f))
    assert code == 2 and "policies.1.priority" in out and "protect-db" in out
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["ports"][0]["security_groups"] = ["nope"]
    f.write_text(yaml.safe_dump(doc))
    code, out = vnet(api, "apply", "-f", str(f))
    assert code == 2 and "ports.0.security_groups.0" in out and "no security group 'nope'" in out
    assert api.ctl.nb.state().revision == before
