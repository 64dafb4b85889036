"""Routers and floating IPs through the REST API and the SDK: CRUD, and every refusal
answered 4xx naming the field, with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.client import Client
from vnet.model.objects import MAX_PORT_KEY

from .helpers import client, refused

ROUTED = yaml.safe_load((Path(__file__).parents[1] / "model" / "routed.yaml").read_text())


@pytest.fixture
def api() -> Iterator[Client]:
    with client(ROUTED) as c:
        yield c


def test_routers_and_floating_ips_round_trip(api: Client) -> None:
    subnets = {s["name"]: s["id"] for s in api.list("subnets")}
    [r1] = api.list("routers", tenant="shop")
    assert [i["subnet"] for i in r1["interfaces"]] == [
        subnets["web-v4"], subnets["web-v6"], subnets["db-v4"]
    ]  # fmt: skip
    assert r1["tunnel_key"] == 1 and r1["gateway"]["ip"] == "203.0.113.2"
    r2 = api.create("router", name="r2", tenant="shop", interfaces=[{"subnet": "spare-v4"}])
    assert r2["interfaces"][0]["tunnel_key"] == MAX_PORT_KEY and r2["tunnel_key"] == 2
    assert r2["interfaces"][0]["mac"].startswith("02:")
    r2 = api.update("router", "r2", {"routes": [{"cidr": "10.9.0.0/16", "nexthop": "10.1.0.140"}]},
                    revision=r2["revision"], tenant="shop")  # fmt: skip
    assert api.get("routers", "r2", tenant="shop")["routes"] == r2["routes"]
    f = api.create("floating-ip", name="b-public", tenant="shop", network="public", port="b")
    assert f["ip"] == "203.0.113.4" and f["port"] == api.get("port", "b", tenant="shop")["id"]
    assert [x["name"] for x in api.list("floating_ips")] == ["a-public", "b-public"]
    api.delete("floating_ips", "b-public", tenant="shop")
    api.delete("router", "r2", tenant="shop")
    assert [x["name"] for x in api.list("routers")] == ["r1"]


def test_openapi_describes_routers_and_floating_ips(api: Client) -> None:
    spec = api.http.get("/openapi.json").json()
    for plural in ("routers", "floating_ips"):
        assert f"/v1/{plural}" in spec["paths"] and f"/v1/{plural}/{{ref}}" in spec["paths"]
        assert set(spec["paths"][f"/v1/{plural}/{{ref}}"]) == {"get", "patch", "delete"}
    schemas = spec["components"]["schemas"]
    for name in ("Router", "FloatingIP", "Gateway", "RouterInterface", "PortForwarding"):
        assert any(k.split("-")[0] == name for k in schemas), name


R = {"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}]}
F = {"name": "f2", "tenant": "shop", "network": "public"}


@pytest.mark.parametrize(
    ("kind", "body", "status", "loc"),
    [
        ("router", {**R, "routes": [{"cidr": "0.0.0.0/0", "nexthop": "10.9.0.1"}]},
         422, ["routes", 0, "nexthop"]),
        ("router", {**R, "routes": [{"cidr": "0.0.0.0/0", "nexthop": "10.1.0.129"}]},
         422, ["routes", 0, "nexthop"]),
        ("router", {**R, "routes": [{"cidr": "::/0", "nexthop": "10.1.0.140"}]},
         422, ["routes", 0]),
        ("router", {**R, "interfaces": [{"subnet": "other-v4"}]}, 422, ["interfaces", 0, "subnet"]),
        ("router", {**R, "interfaces": [{"subnet": "web-v4"}]}, 409, ["interfaces", 0, "subnet"]),
        ("router", {**R, "interfaces": [{"subnet": "spare-v4"}] * 2},
         422, ["interfaces", 1, "subnet"]),
        ("router", {**R, "gateway": {"network": "spare"}}, 422, ["gateway", "network"]),
        ("router", {**R, "gateway": {"network": "public", "chassis": ["hv2"]}},
         422, ["gateway", "chassis", 0]),
        ("floating_ip", {**F, "ip": "198.51.100.7"}, 422, ["ip"]),
        ("floating_ip", {**F, "ip": "203.0.113.3"}, 409, ["ip"]),
        ("floating_ip", {**F, "ip": "203.0.113.2"}, 409, ["ip"]),
        ("floating_ip", {**F, "network": "web"}, 422, ["network"]),
        ("floating_ip", {**F, "port": "o"}, 422, ["port"]),
        ("floating_ip", {**F, "port": "c"}, 422, ["port"]),
        ("port", {"name": "x", "tenant": "shop", "network": "web",
                  "fixed_ips": [{"ip": "fd00:1::99"}]}, 422, ["fixed_ips", 0, "ip"]),
        ("port", {"name": "x", "tenant": "shop", "network": "web", "tunnel_key": MAX_PORT_KEY},
         409, ["tunnel_key"]),
    ],
)  # fmt: skip
def test_refusals_are_4xx_naming_the_field(
    api: Client, kind: str, body: dict[str, Any], status: int, loc: list[Any]
) -> None:
    e = refused(api, status, api.create, kind, **body)
    assert e.loc == loc and e.message, e


def test_overlapping_interfaces_and_deletions_under_a_router_are_refused(api: Client) -> None:
    e = refused(api, 409, api.update, "router", "r1",
                {"interfaces": [{"subnet": "web-v4"}, {"subnet": "spare-v4"}]}, tenant="shop")  # fmt: skip
    assert e.loc == ["interfaces", 1, "subnet"] and "overlaps" in e.message
    for kind, name, cascade in (
        ("subnet", "web-v4", True), ("network", "public", False), ("port", "a", False),
        ("chassis", "hv1", True), ("router", "r1", True),
    ):  # fmt: skip
        e = refused(api, 409, api.delete, kind, name, cascade=cascade)
        assert "in use by" in e.message and ("r1" in e.message or "a-public" in e.message)
    e = refused(api, 409, api.update, "chassis", "hv1", {"physnets": {}})
    assert e.loc == ["physnets"]


def test_create_all_adds_in_one_transaction(api: Client) -> None:
    doc = {
        "floating_ips": [{"name": "f2", "tenant": "shop", "network": "public", "port": "c"}],
        "routers": [{"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}],
                     "gateway": {"network": "public"}}],
    }  # fmt: skip
    made = api.create_all(doc)  # the router first: the floating IP needs it
    assert [(m["kind"], m["object"]["name"]) for m in made] == [
        ("router", "r2"), ("floating_ip", "f2")
    ]  # fmt: skip
    assert made[1]["object"]["ip"] == "203.0.113.5"  # after r1's .2, a-public's .3, r2's .4
    e = refused(api, 409, api.create_all, doc)
    assert e.loc == ["routers", 0, "name"]
    doc["routers"][0]["name"] = "r3"
    e = refused(api, 409, api.create_all, doc)
    assert e.loc == ["routers", 0, "interfaces", 0, "subnet"]
