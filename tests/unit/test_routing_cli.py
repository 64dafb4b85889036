"""Routers and floating IPs through the `vnet` command, against a real API on loopback."""

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

ROUTED = Path(__file__).resolve().parent / "model" / "routed.yaml"
runner = CliRunner()


@pytest.fixture
def api() -> Iterator[Served]:
    with Served(Controller(SqliteStore())) as s:
        r = runner.invoke(app, ["apply", "-f", str(ROUTED), "--api", s.url])
        assert r.exit_code == 0, r.output
        yield s


def vnet(s: Served, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, [*args, "--api", s.url], env={"COLUMNS": "250"})
    return r.exit_code, r.output


def write(tmp_path: Path, doc: dict[str, Any]) -> str:
    f = tmp_path / "model.yaml"
    f.write_text(yaml.safe_dump(doc))
    return str(f)


def test_get_describe_and_delete_routers(api: Served) -> None:
    code, out = vnet(api, "get", "routers")
    assert code == 0, out
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert rows == [["r1", "shop", "web-v4,", "web-v6,", "db-v4", "1", "public", "203.0.113.2",
                     "up"]], out  # fmt: skip
    code, out = vnet(api, "get", "floating-ips")
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert code == 0 and rows == [["a-public", "shop", "public", "203.0.113.3", "a", "0"]], out
    code, out = vnet(api, "describe", "router", "r1", "--tenant", "shop")
    doc = yaml.safe_load(out)
    assert code == 0 and [i["subnet"] for i in doc["interfaces"]] == ["web-v4", "web-v6", "db-v4"]
    assert doc["gateway"]["network"] == "public" and doc["gateway"]["chassis"] == ["hv1"]
    code, out = vnet(api, "get", "router", "r1", "-o", "json")
    assert code == 0 and json.loads(out)["interfaces"][0]["tunnel_key"] == 32767
    code, out = vnet(api, "apply", "-f", str(ROUTED), "--dry-run")
    assert code == 0 and "0 object(s) would change" in out  # allocated values stay
    code, out = vnet(api, "delete", "floating_ip", "a-public")
    assert code == 0, out
    code, out = vnet(api, "delete", "router", "r1")
    assert code == 0 and "router r1 deleted" in out
    code, out = vnet(api, "get", "routers")
    assert code == 0 and "r1" not in out


def test_a_file_with_a_router_is_applied_and_changed(api: Served, tmp_path: Path) -> None:
    doc = yaml.safe_load(ROUTED.read_text())
    doc["routers"].append({"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}]})
    doc["floating_ips"].append({"name": "b-public", "tenant": "shop", "network": "public",
                                "port": "b"})  # fmt: skip
    code, out = vnet(api, "apply", "-f", write(tmp_path, doc))
    assert code == 0 and "2 object(s) changed" in out, out
    st = api.ctl.nb.state()
    assert {f.name: f.ip for f in st.all("floating_ip")} == {
        "a-public": "203.0.113.3", "b-public": "203.0.113.4"
    }  # fmt: skip
    assert [r.tunnel_key for r in st.all("router")] == [1, 2]


REFUSALS: list[tuple[str, Any, str, str]] = [
    ("routers", {"routes": [{"cidr": "0.0.0.0/0", "nexthop": "10.9.0.1"}]},
     "routers.0.routes.0.nexthop", "outside every subnet"),
    ("routers", {"interfaces": [{"subnet": "other-v4"}]},
     "routers.0.interfaces.0.subnet", "tenant 'other'"),
    ("routers", {"interfaces": [{"subnet": "web-v4"}, {"subnet": "spare-v4"}]},
     "routers.0.interfaces.1.subnet", "overlaps"),
    ("routers", {"gateway": {"network": "spare"}}, "routers.0.gateway.network", "not external"),
    ("routers", {"gateway": {"network": "public", "chassis": ["hv2"]}},
     "routers.0.gateway.chassis.0", "no uplink for physnet"),
    ("floating_ips", {"ip": "198.51.100.7"}, "floating_ips.0.ip", "outside"),
    ("floating_ips", {"ip": "203.0.113.2"}, "floating_ips.0.ip", "gateway"),
    ("floating_ips", {"network": "web"}, "floating_ips.0.network", "not external"),
    ("floating_ips", {"port": "o"}, "floating_ips.0.port", "tenant 'other'"),
    ("floating_ips", {"port": "c"}, "floating_ips.0.port", "no IPv4 address"),
    ("ports", {"fixed_ips": [{"subnet": "web-v4"}, {"ip": "fd00:1::99"}]},
     "ports.0.fixed_ips.1.ip", "EUI-64"),
]  # fmt: skip


@pytest.mark.parametrize(("plural", "fields", "where", "words"), REFUSALS)
def test_bad_files_are_refused_naming_the_field(
    api: Served, tmp_path: Path, plural: str, fields: dict[str, Any], where: str, words: str
) -> None:
    doc = yaml.safe_load(ROUTED.read_text())
    doc[plural][0].update(fields)
    before = api.ctl.nb.state().revision
    code, out = vnet(api, "apply", "-f", write(tmp_path, doc))
    assert code == 2 and where in out and words in out, out
    assert api.ctl.nb.state().revision == before


def test_deletions_under_a_router_are_refused(api: Served) -> None:
    before = api.ctl.nb.state().revision
    for args in (("router", "r1"), ("port", "a"), ("subnet", "web-v4", "--cascade"),
                 ("network", "public"), ("chassis", "hv1", "--cascade")):  # fmt: skip
        code, out = vnet(api, "delete", *args)
        assert code == 2 and "in use by" in out, (args, out)
    assert api.ctl.nb.state().revision == before


def test_create_adds_a_files_routers_all_or_nothing(api: Served, tmp_path: Path) -> None:
    doc = {
        "routers": [{"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}],
                     "routes": [{"cidr": "10.9.0.0/16", "nexthop": "10.1.0.140"}]}],
        "floating_ips": [{"name": "b-public", "tenant": "shop", "network": "public", "port": "b"}],
    }  # fmt: skip
    code, out = vnet(api, "create", "-f", write(tmp_path, doc))
    assert code == 0 and "created router r2" in out and "2 object(s) created" in out, out
    st = api.ctl.nb.state()
    assert sorted(r.name for r in st.all("router")) == ["r1", "r2"]
    assert [f.ip for f in st.all("floating_ip") if f.name == "b-public"] == ["203.0.113.4"]
    before = st.revision
    code, out = vnet(api, "create", "-f", write(tmp_path, doc))
    assert code == 2 and "routers.0.name" in out and "exists" in out, out
    doc = {
        "routers": [{"name": "r3", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}]}],
        "floating_ips": [{"name": "f3", "tenant": "shop", "network": "public", "port": "c"}],
    }  # fmt: skip
    code, out = vnet(api, "create", "-f", write(tmp_path, doc))
    assert code == 2 and "routers.0.interfaces.0.subnet" in out and "router 'r2'" in out, out
    code, out = vnet(api, "create", "-f", write(tmp_path, {"floating_ips": doc["floating_ips"]}))
    assert code == 2 and "floating_ips.0.port" in out and "no IPv4 address" in out, out
    assert api.ctl.nb.state().revision == before
