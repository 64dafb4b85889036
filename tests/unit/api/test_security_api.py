"""Security groups and policies through the REST API and the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.client import Client

from .helpers import client, refused

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((ROOT / "examples/microseg.yaml").read_text())


@pytest.fixture
def api() -> Iterator[Client]:
    with client(EXAMPLE) as c:
        yield c


def test_groups_and_policies_round_trip(api: Client) -> None:
    ports = {p["name"]: p["id"] for p in api.list("ports")}
    web = api.get("security-group", "web")
    assert web["members"] == [ports["web"]] and web["rules"][0]["from"]["group"]
    g = api.create("security_group", name="ops", tenant="shop", selector={"tier": "client"},
                   rules=[{"direction": "egress", "protocol": "udp", "ports": 53,
                           "to": {"cidr": "10.20.0.0/24"}}])  # fmt: skip
    assert g["rules"][0]["ports"] == "53" and g["members"] == [ports["client"]]
    assert "from_" not in g["rules"][0] and g["rules"][0]["to"] == {"cidr": "10.20.0.0/24"}
    api.update("port", "web", {"security_groups": ["ops"]})
    assert sorted(api.get("security_groups", "ops")["members"]) == sorted(
        [ports["client"], ports["web"]]
    )
    p = api.create("policy", name="audit", tenant="shop", priority=5,
                   rules=[{"action": "pass", "direction": "ingress", "log": True}])  # fmt: skip
    assert p["applied_to"] == {} and p["rules"][0]["log"] is True
    q = api.update("policy", "audit", {"priority": 6}, revision=p["revision"])
    assert q["priority"] == 6
    assert [x["name"] for x in api.list("policies")] == ["audit", "protect-db"]
    api.delete("policy", "audit")
    api.delete("security_group", "ops", cascade=True)
    assert api.get("port", "web")["security_groups"] == []


@pytest.mark.parametrize(
    ("kind", "fields", "status", "loc"),
    [
        ("security_group", {"rules": [{"direction": "ingress", "protocol": "tcp", "ports": "0"}]},
         422, ["rules", 0, "ports"]),
        ("security_group", {"rules": [{"direction": "ingress", "protocol": "tcp", "icmp_type": 8}]},
         422, ["rules", 0, "icmp_type"]),
        ("security_group", {"rules": [{"direction": "ingress", "from": {"group": "nope"}}]},
         422, ["rules", 0, "from", "group"]),
        ("security_group", {"selector": {"no good": "x"}}, 422, ["selector"]),
        ("security_group", {"name": "web"}, 409, ["name"]),
        ("policy", {"priority": 100}, 409, ["priority"]),
        ("policy", {"priority": 1, "rules": [{"direction": "ingress", "action": "drop"}]},
         422, ["rules", 0, "action"]),
        ("policy", {"priority": 1, "rules": [{"direction": "ingress", "action": "deny",
                                              "ethertype": "IPv6", "from": {"cidr": "10.0.0.0/8"}}]},
         422, ["rules", 0, "from"]),
        ("port", {"network": "app", "security_groups": ["nope"]}, 422, ["security_groups", 0]),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_field(
    api: Client, kind: str, fields: dict[str, Any], status: int, loc: list[Any]
) -> None:
    e = refused(api, status, api.create, kind, **{"name": "x", "tenant": "shop", **fields})
    assert e.loc == loc and e.message


def test_a_group_in_use_is_not_deleted(api: Client) -> None:
    e = refused(api, 409, api.delete, "security_group", "clients")
    assert "security group 'web' rule 0" in e.message
    refused(api, 404, api.get, "policy", "ghost")


def test_a_dry_run_says_what_it_opens_and_closes(api: Client) -> None:
    doc = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    doc["policies"] = []  # client may try db again: the group lets only web in
    doc["security_groups"][2]["rules"].append(
        {"direction": "ingress", "protocol": "tcp", "ports": "5432",
         "from": {"selector": {"tier": "client"}}})  # fmt: skip
    before = api.status()["revision"]
    plan = api.apply(doc, dry_run=True)
    assert api.status()["revision"] == before
    assert [(r["change"], r["from"], r["to"], r["service"], r["tenant"], r["side"])
            for r in plan["reachability"]] == [
        ("opens", ["client"], ["db"], "tcp/5432", "shop", "ingress")
    ]  # fmt: skip
    assert plan["reachability"][0]["before"].startswith("reject: ")
    assert api.apply(EXAMPLE, dry_run=True)["reachability"] == []


def test_openapi_describes_the_security_kinds(api: Client) -> None:
    spec = api.http.get("/openapi.json").json()
    for plural in ("security_groups", "policies"):
        assert f"/v1/{plural}" in spec["paths"] and f"/v1/{plural}/{{ref}}" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert "SecurityGroup" in schemas and "Policy" in schemas
    rule = schemas.get("GroupRule") or schemas["GroupRule-Input"]
    assert "from" in rule["properties"] and "from_" not in rule["properties"]
