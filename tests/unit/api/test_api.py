"""The REST API through the Python SDK (in-process ASGI transport)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vnet.client import Client

from .helpers import client, refused


@pytest.fixture
def api() -> Iterator[Client]:
    with client() as c:
        c.create("tenant", name="blue", labels={"team": "web"})
        c.create("tenant", name="red")
        c.create("network", name="net", tenant="blue")
        c.create("subnet", name="s", tenant="blue", network="net", cidr="10.0.0.0/24")
        yield c


def test_crud_round_trip(api: Client) -> None:
    p = api.create("port", name="vm1", tenant="blue", network="net", labels={"app": "web"})
    assert p["fixed_ips"][0]["ip"] == "10.0.0.2" and p["status"] == "down"
    assert api.get("port", "vm1")["id"] == p["id"]
    assert [x["name"] for x in api.list("ports", labels={"app": "web"})] == ["vm1"]
    assert api.list("ports", labels={"app": "db"}) == []
    assert [t["name"] for t in api.list("tenants", labels={"team": "web"})] == ["blue"]
    q = api.update("port", "vm1", {"description": "web server"}, revision=p["revision"])
    assert q["description"] == "web server" and q["revision"] > p["revision"]
    api.delete("port", "vm1")
    assert api.list("ports") == []


def test_pagination(api: Client) -> None:
    for i in range(5):
        api.create("port", name=f"p{i}", tenant="blue", network="net")
    page = api.http.get("/v1/ports", params={"limit": 2, "offset": 2}).json()
    assert [p["name"] for p in page["items"]] == ["p2", "p3"] and page["total"] == 5
    assert page["next"] == 4
    assert len(api.list("ports")) == 5


@pytest.mark.parametrize(
    ("kind", "fields", "status", "loc"),
    [
        ("port", {"fixed_ips": [{"ip": "192.168.1.5"}]}, 422, ["fixed_ips", 0, "ip"]),
        ("port", {"mac": "not-a-mac"}, 422, ["mac"]),
        ("port", {"network": "nope"}, 422, ["network"]),
        ("port", {"surprise": True}, 422, ["surprise"]),
        ("subnet", {"cidr": "10.0.0.0/25"}, 409, ["cidr"]),
        ("network", {"segment_id": 1}, 409, ["segment_id"]),
        ("network", {"segment_id": 99999999}, 422, ["segment_id"]),
    ],
)
def test_bad_input(
    api: Client, kind: str, fields: dict[str, Any], status: int, loc: list[Any]
) -> None:
    base: dict[str, Any] = {"name": "x", "tenant": "blue"}
    if kind in ("port", "subnet"):
        base["network"] = "net"
    if kind == "subnet":
        base["cidr"] = "10.9.0.0/24"
    e = refused(api, status, api.create, kind, **{**base, **fields})
    assert e.loc == loc and e.message


def test_conflicts_and_missing(api: Client) -> None:
    p = api.create("port", name="vm1", tenant="blue", network="net")
    api.update("port", "vm1", {"description": "a"}, revision=p["revision"])
    e = refused(api, 409, api.update, "port", "vm1", {"description": "b"}, revision=p["revision"])
    assert e.loc == ["revision"]
    refused(api, 409, api.create, "port", name="vm2", tenant="blue", network="net", mac=p["mac"])
    e = refused(api, 409, api.create, "port", name="vm2", tenant="blue", network="net",
                fixed_ips=[{"ip": p["fixed_ips"][0]["ip"]}])  # fmt: skip
    assert e.loc == ["fixed_ips", 0, "ip"] and p["fixed_ips"][0]["ip"] in e.message
    refused(api, 409, api.delete, "network", "net")
    refused(api, 404, api.get, "port", "ghost")
    refused(api, 404, api.delete, "port", "ghost")
    api.delete("network", "net", cascade=True)
    assert api.list("ports") == [] and api.list("subnets") == []


def test_apply_dry_run_changes_nothing(api: Client) -> None:
    doc = {
        "tenants": [{"name": "blue"}, {"name": "red"}],
        "networks": [{"name": "net", "tenant": "blue"}],
        "subnets": [{"name": "s", "tenant": "blue", "network": "net", "cidr": "10.0.0.0/24"}],
        "ports": [{"name": "vm1", "tenant": "blue", "network": "net"}],
    }
    before = api.status()["revision"]
    plan = api.apply(doc, dry_run=True)
    assert [(c["action"], c["name"]) for c in plan["changes"]] == [
        ("update", "blue"),
        ("create", "vm1"),
    ]
    assert api.status()["revision"] == before
    done = api.apply(doc)
    assert not done["dry_run"] and api.get("port", "vm1")
    assert api.apply(doc)["changes"] == []


def test_openapi_describes_every_kind(api: Client) -> None:
    spec = api.http.get("/openapi.json").json()
    for plural in ("tenants", "networks", "subnets", "ports", "chassis"):
        assert f"/v1/{plural}" in spec["paths"] and f"/v1/{plural}/{{ref}}" in spec["paths"]
    assert "Port" in spec["components"]["schemas"]
