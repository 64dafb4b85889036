"""`vnet verify` without a file: the running controller's current model, through its API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.client import ApiError, Client
from vnet.compiler import logical
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

MICROSEG = Path(__file__).resolve().parents[2] / "examples" / "microseg.yaml"
runner = CliRunner()


@pytest.fixture
def api() -> Iterator[Served]:
    ctl = Controller(SqliteStore())
    ctl.nb.apply(yaml.safe_load(MICROSEG.read_text()))
    with Served(ctl) as s:
        yield s


def verify(s: Served, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["verify", *args, "--api", s.url], env={"COLUMNS": "250"})
    return r.exit_code, r.output


def test_verify_proves_the_controllers_model_and_follows_its_changes(api: Served) -> None:
    code, out = verify(api, "--from", "client", "--to", "db")
    assert code == 0, out
    assert "client -> db tcp/5432 (IPv4): reject" in out and "flows: reject" in out
    assert "0 disagreements" in out
    whole = runner.invoke(app, ["verify", "-f", str(MICROSEG)]).output.splitlines()[-1]
    assert verify(api)[1].splitlines()[-1] == whole  # the same cells as the file's
    with Client(api.url) as c:
        c.update("port", "client", {"labels": {"tier": "web"}})  # client is a web server now
        res = c.verify(src="client", dst="db")
    assert res["disagreements"] == [] and res["cells"]
    (cell,) = [x for x in res["cells"] if x["service"] == "tcp/5432 (IPv4)"]
    assert (cell["intended"], cell["flows"], cell["agrees"]) == ("allow", "allow", True)


def test_verify_exits_1_on_a_disagreement(api: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logical, "_FEATURES", [])  # flows without the firewall
    code, out = verify(api)
    assert code == 1 and "DISAGREE client -> db" in out


def test_verify_names_a_missing_tenant(api: Served) -> None:
    code, out = verify(api, "--tenant", "nope")
    assert code == 2 and "tenant" in out and "nope" in out
    with Client(api.url) as c, pytest.raises(ApiError) as e:
        c.verify(tenant="nope")
    assert e.value.status == 404
