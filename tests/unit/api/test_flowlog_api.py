"""The connection log through the API, the SDK and `vnet flows log`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from vnet.api import create_app
from vnet.cli.main import app
from vnet.client import ApiError, Client
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

runner = CliRunner()


def record(verdict: str, src_port: str | None, dst_port: str, **kw: Any) -> dict[str, Any]:
    r = {
        "chassis": "hv1", "proto": "tcp", "src": "10.0.0.2", "dst": "10.0.0.3",
        "sport": 40000, "dport": 5432, "src_port": src_port, "dst_port": dst_port,
        "verdict": verdict, "rule": "policy web-db rule 2", "direction": "ingress",
        "port": dst_port,
    }  # fmt: skip
    return {**r, **kw}


@pytest.fixture
def ctl() -> Controller:
    c = Controller(SqliteStore())
    log = c.punter.flow_log
    log.add(**record("deny", "client", "db"))
    log.add(**record("allow", "web", "db", dport=80))
    log.add(**record("reject", "client", "web", proto="udp", dport=53))
    return c


@pytest.fixture
def api(ctl: Controller) -> Iterator[Client]:
    with TestClient(create_app(ctl)) as http:
        yield Client("http://testserver", http=http)


def test_filters(api: Client) -> None:
    every = api.flow_log()
    assert [r["seq"] for r in every["records"]] == [1, 2, 3] and every["next"] == 3
    assert every["dropped"] == 0
    assert [r["verdict"] for r in api.flow_log(port="client")["records"]] == ["deny", "reject"]
    assert [r["src_port"] for r in api.flow_log(verdict="allow")["records"]] == ["web"]
    assert [r["seq"] for r in api.flow_log(port="db", verdict="deny")["records"]] == [1]
    assert [r["seq"] for r in api.flow_log(after=2)["records"]] == [3]
    assert [r["seq"] for r in api.flow_log(limit=1)["records"]] == [3]
    assert api.flow_log(since=time.time() + 60)["records"] == []
    iso = datetime.fromtimestamp(time.time() - 60).isoformat()
    assert len(api.flow_log(since=iso)["records"]) == 3


@pytest.mark.parametrize(
    ("kw", "loc"), [({"verdict": "drop"}, ["verdict"]), ({"since": "yesterday"}, ["since"])]
)
def test_bad_filters_are_refused_naming_them(
    api: Client, kw: dict[str, Any], loc: list[str]
) -> None:
    with pytest.raises(ApiError) as e:
        api.flow_log(**kw)
    assert e.value.status == 422 and e.value.loc == loc


def test_a_follower_waits_for_the_next_matching_record(ctl: Controller, api: Client) -> None:
    log = ctl.punter.flow_log
    started = time.monotonic()
    assert api.flow_log(after=3, wait=0.2)["records"] == []  # nothing came: an empty answer
    assert time.monotonic() - started >= 0.2

    def later() -> None:
        time.sleep(0.1)
        log.add(**record("allow", "web", "db"))  # does not match: the poll goes on waiting
        time.sleep(0.1)
        log.add(**record("deny", "x", "db"))

    threading.Thread(target=later).start()
    r = api.flow_log(verdict="deny", after=3, wait=2)
    assert [x["seq"] for x in r["records"]] == [5] and r["next"] == 5


def cli(s: Served, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["flows", "log", *args, "--api", s.url])
    return r.exit_code, r.output


def test_cli_lines_json_and_filters(ctl: Controller) -> None:
    with Served(ctl) as s:
        code, out = cli(s)
        lines = out.strip().splitlines()
        assert code == 0 and len(lines) == 3
        assert " hv1 deny client -> db tcp 10.0.0.2:40000 -> 10.0.0.3:5432 " in lines[0]
        assert lines[0].endswith("policy web-db rule 2 (ingress)")
        code, out = cli(s, "--verdict", "deny", "-o", "json")
        (only,) = [json.loads(x) for x in out.strip().splitlines()]
        assert code == 0 and (only["src_port"], only["dst_port"]) == ("client", "db")
        code, out = cli(s, "--port", "web")
        assert code == 0 and len(out.strip().splitlines()) == 2
        code, out = cli(s, "--verdict", "drop")
        assert code == 2 and "--verdict 'drop'" in out
        code, out = cli(s, "--since", "yesterday")
        assert code == 2 and "since" in out


def test_cli_follow_prints_records_as_they_come(
    ctl: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real = Client.flow_log

    def flow_log(self: Client, **kw: Any) -> dict[str, Any]:
        calls.append(kw)
        if len(calls) == 2:  # the first long poll: a record arrives meanwhile
            threading.Timer(
                0.2, lambda: ctl.punter.flow_log.add(**record("deny", "late", "db"))
            ).start()
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, **kw)

    monkeypatch.setattr(Client, "flow_log", flow_log)
    with Served(ctl) as s:
        code, out = cli(s, "--follow", "--verdict", "deny")
    assert code == 0
    assert [line.split()[3] for line in out.strip().splitlines()] == ["client", "late"]
    assert calls[1]["after"] == 3 and calls[1]["wait"] > 0
