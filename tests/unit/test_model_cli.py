"""The model commands against a real API on loopback: output, and bad input refused whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

runner = CliRunner()
MODEL = """
tenants: [{name: blue}]
chassis: [{name: hv1}]
networks: [{name: net, tenant: blue}]
subnets: [{name: s, tenant: blue, network: net, cidr: 10.0.0.0/24}]
ports:
  - {name: web, tenant: blue, network: net, chassis: hv1, fixed_ips: [{ip: 10.0.0.10}]}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    with Served(Controller(SqliteStore())) as s:
        f = tmp_path / "model.yaml"
        f.write_text(MODEL)
        r = runner.invoke(app, ["apply", "-f", str(f), "--api", s.url])
        assert r.exit_code == 0, r.output
        yield s, tmp_path


def vnet(s: Served, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, [*args, "--api", s.url])
    return r.exit_code, r.output


def test_get_describe_and_idempotent_apply(api: tuple[Served, Path]) -> None:
    s, d = api
    code, out = vnet(s, "get", "ports")
    assert code == 0 and "web" in out and "10.0.0.10" in out and "hv1" in out
    code, out = vnet(s, "get", "port", "web", "-o", "json")
    assert json.loads(out)["fixed_ips"][0]["ip"] == "10.0.0.10"
    code, out = vnet(s, "describe", "network", "net")
    assert code == 0 and "web" in out and "blue" in out
    code, out = vnet(s, "apply", "-f", str(d / "model.yaml"), "--dry-run")
    assert code == 0 and "0 object(s) would change" in out


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ("ip: 10.0.0.10", "ports.0.fixed_ips.0.ip: 10.9.9.9 is outside every subnet"),
        ("cidr: 10.0.0.0/24", "subnets.0.cidr: '10.0.0.1/24' is not a network"),
        ("name: web", "ports.0.name: String should match pattern"),
    ],
)
def test_bad_file_changes_nothing(api: tuple[Served, Path], edit: str, words: str) -> None:
    s, d = api
    bad = {"ip: 10.0.0.10": "ip: 10.9.9.9", "cidr: 10.0.0.0/24": "cidr: 10.0.0.1/24",
           "name: web": "name: 'bad name'"}[edit]  # fmt: skip
    f = d / "bad.yaml"
    f.write_text(MODEL.replace(edit, bad) + "  - {name: extra, tenant: blue, network: net}\n")
    before = s.ctl.nb.state().revision
    code, out = vnet(s, "apply", "-f", str(f))
    assert code == 2 and words in " ".join(out.split()), out
    assert s.ctl.nb.state().revision == before


@pytest.mark.parametrize(
    ("kind", "extra", "words"),
    [
        ("ports", {"name": "web2", "mac": "WEB_MAC"}, "ports.1.mac"),
        ("ports", {"name": "web2", "fixed_ips": [{"ip": "10.0.0.10"}]}, "ports.1.fixed_ips.0.ip"),
        ("subnets", {"name": "s2", "cidr": "10.0.0.128/25"}, "subnets.1.cidr"),
        ("networks", {"name": "net2", "segment_id": "NET_VNI"}, "networks.1.segment_id"),
    ],
)
def test_conflicts_through_the_cli_change_nothing(
    api: tuple[Served, Path], kind: str, extra: dict[str, Any], words: str
) -> None:
    s, d = api
    doc = yaml.safe_load(MODEL)
    web = s.ctl.nb.list("port")[0]
    net = s.ctl.nb.list("network")[0]
    fill = {"WEB_MAC": web.mac, "NET_VNI": net.segment_id}
    item = {"tenant": "blue", "network": "net"}
    item.update({k: fill[v] if isinstance(v, str) and v in fill else v for k, v in extra.items()})
    if kind == "networks":
        del item["network"]
    doc[kind].append(item)
    f = d / "conflict.yaml"
    f.write_text(yaml.safe_dump(doc))
    before = s.ctl.nb.state().revision
    code, out = vnet(s, "apply", "-f", str(f))
    assert code == 2 and words in out, out
    assert s.ctl.nb.state().revision == before


def test_refusals_name_the_problem(api: tuple[Served, Path]) -> None:
    s, _ = api
    before = s.ctl.nb.state().revision
    code, out = vnet(s, "delete", "network", "net")
    assert code == 2 and "still has ports: web" in out
    code, out = vnet(s, "get", "port", "ghost")
    assert code == 2 and "no port 'ghost'" in out
    code, out = vnet(s, "get", "flavours")
    assert code == 2 and "unknown kind" in out
    assert s.ctl.nb.state().revision == before
    code, out = vnet(s, "delete", "network", "net", "--cascade")
    assert code == 0 and s.ctl.nb.list("port") == []
