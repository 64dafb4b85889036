"""A router's effective routing table through the REST API and the SDK: kinds, next
hops with their out interfaces, what is installed and why not, and provenance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from vnet.api import app as api_app
from vnet.api import create_app
from vnet.client import ApiError, Client
from vnet.controller.service import Controller
from vnet.model.objects import Network, Route, Router, RouterInterface, Subnet, Tenant
from vnet.model.rules import State
from vnet.store import SqliteStore

ROUTED = yaml.safe_load((Path(__file__).parents[1] / "model" / "routed.yaml").read_text())
EXTRA = [  # a second next hop for 192.168.0.0/16 (ECMP), a shadowed route, an IPv6 one
    {"cidr": "192.168.0.0/16", "nexthop": "10.2.0.253"},
    {"cidr": "10.2.0.0/24", "nexthop": "10.1.0.254"},
    {"cidr": "fd00:99::/48", "nexthop": "fd00:1::99"},
]


@pytest.fixture
def api() -> Iterator[Client]:
    doc = yaml.safe_load(yaml.safe_dump(ROUTED))
    doc["routers"][0]["routes"] += EXTRA
    ctl = Controller(SqliteStore())
    with TestClient(create_app(ctl)) as http:
        c = Client("http://testserver", http=http)
        c.apply(doc)
        yield c


def rows(res: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (r["cidr"], r["kind"], tuple((h["ip"], h["subnet"]) for h in r["nexthops"]),
         r["installed"], r["why"])
        for r in res["routes"]
    ]  # fmt: skip


def test_the_table_with_kinds_next_hops_and_what_is_installed(api: Client) -> None:
    res = api.routes("r1", tenant="shop")
    assert (res["router"], res["tenant"], res["admin_up"]) == ("r1", "shop", True)
    assert res["id"] == api.get("router", "r1", tenant="shop")["id"]
    shadowed = "shadowed by the connected route 10.2.0.0/24"
    assert rows(res) == [
        ("10.1.0.0/24", "connected", ((None, "web-v4"),), True, ""),
        ("10.2.0.0/24", "connected", ((None, "db-v4"),), True, ""),
        ("10.2.0.0/24", "static", (("10.1.0.254", None),), False, shadowed),
        ("203.0.113.0/24", "connected", ((None, "public-v4"),), True, ""),
        ("192.168.0.0/16", "ecmp", (("10.2.0.253", "db-v4"), ("10.2.0.254", "db-v4")), True, ""),
        ("fd00:1::/64", "connected", ((None, "web-v6"),), True, ""),
        ("fd00:99::/48", "static", (("fd00:1::99", "web-v6"),), True, ""),
    ]
    gw = res["routes"][3]  # the gateway's subnet: connected, by its address there
    assert gw["origin"] == ["router r1 gateway (subnet public-v4)"]
    ecmp = res["routes"][4]
    assert ecmp["origin"] == ["router r1 routes[0] (via 10.2.0.254)",
                              "router r1 routes[1] (via 10.2.0.253)"]  # fmt: skip
    (hop, other) = ecmp["nexthops"]
    assert (hop["interface"], hop["network"], hop["address"]) == (3, "db", "10.2.0.1")
    # each next hop with the entry it came from, though they are listed in address order
    assert hop["origin"] == ["router r1 routes[1] (via 10.2.0.253)"]
    assert other["origin"] == ["router r1 routes[0] (via 10.2.0.254)"]
    assert res["routes"][0]["nexthops"][0]["origin"] == res["routes"][0]["origin"]
    assert res["routes"][0]["origin"] == ["router r1 interfaces[0] (subnet web-v4)"]
    assert res["routes"][2]["origin"] == ["router r1 routes[2] (via 10.1.0.254)"]


def test_a_router_down_installs_nothing_and_says_so(api: Client) -> None:
    api.update("router", "r1", {"admin_up": False}, tenant="shop")
    res = api.routes("r1", tenant="shop")
    assert res["admin_up"] is False
    assert not any(r["installed"] for r in res["routes"])
    assert all(r["why"].startswith("the router is administratively down") for r in res["routes"])
    assert res["routes"][2]["why"].endswith("shadowed by the connected route 10.2.0.0/24")


def test_an_unknown_router_is_404_naming_it(api: Client) -> None:
    with pytest.raises(ApiError) as e:
        api.routes("nope")
    assert e.value.status == 404 and "router 'nope'" in e.value.message
    with pytest.raises(ApiError) as e:
        api.routes("r1", tenant="other")  # r1 is shop's
    assert e.value.status == 404


def test_the_openapi_schema_has_the_routes_endpoint(api: Client) -> None:
    paths = api.http.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/routers/{ref}/routes"]


def _state(routes: list[Route]) -> tuple[State, Router]:
    r = Router(id="r", name="r", tenant="t", tunnel_key=1, routes=routes,
               interfaces=[RouterInterface(subnet="s", mac="0a:00:00:00:00:01", tunnel_key=9)])  # fmt: skip
    st = State.of([Tenant(id="t", name="t"), Network(id="n", name="n", tenant="t", segment_id=5),
                   Subnet(id="s", name="s", network="n", tenant="t", cidr="10.0.0.0/24"), r])  # fmt: skip
    return st, r


def test_an_unusable_next_hop_is_shown_with_why() -> None:
    """What admission refuses, the table still explains (a model from elsewhere)."""
    st, r = _state([Route(cidr="172.16.0.0/12", nexthop="10.9.9.9"),
                    Route(cidr="172.20.0.0/16", nexthop="10.0.0.1"),
                    Route(cidr="172.24.0.0/16", nexthop="10.0.0.5"),
                    Route(cidr="172.24.0.0/16", nexthop="10.7.0.5")])  # fmt: skip
    got = {x["cidr"]: x for x in api_app.routes_json(st, r)["routes"]}
    far = got["172.16.0.0/12"]
    assert (far["installed"], far["why"]) == (False, "next hop 10.9.9.9 is on none of the router's subnets")  # fmt: skip
    assert far["nexthops"] == [{"ip": "10.9.9.9", "interface": None, "subnet": None,
                                "network": None, "address": None,
                                "origin": ["router r routes[0] (via 10.9.9.9)"]}]  # fmt: skip
    assert got["172.20.0.0/16"]["why"] == "next hop 10.0.0.1 is the router's own address"
    half = got["172.24.0.0/16"]  # one good next hop of two: installed, the other said
    assert (half["kind"], half["installed"]) == ("static", True)
    assert half["why"] == "next hop 10.7.0.5 is on none of the router's subnets"
    assert [h["ip"] for h in half["nexthops"]] == ["10.0.0.5"]
    assert half["origin"][1] == "router r routes[3] (via 10.7.0.5)"


def test_ecmp_prefixes_beyond_the_groups_a_router_numbers_use_one_next_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routes = [Route(cidr=c, nexthop=h) for c in ("172.16.0.0/16", "172.17.0.0/16")
              for h in ("10.0.0.7", "10.0.0.8")]  # fmt: skip
    st, r = _state(routes)
    monkeypatch.setattr(api_app, "ECMP_MAX", 1)
    first, second = (x for x in api_app.routes_json(st, r)["routes"] if x["kind"] == "ecmp")
    assert first["why"] == "" and second["installed"]
    assert second["why"] == "more than 1 ECMP prefixes: only via 10.0.0.7"
