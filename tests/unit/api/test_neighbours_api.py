"""A router's learned neighbours through the API: read like any kind, never written.

The controller learns them (`Northbound.learn`, as its punt handler does); the
REST list and get show them; every user write -- create, update, delete, a
model file's entry through apply or create -- is refused naming the kind, and
changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vnet.api import create_app
from vnet.client import Client
from vnet.controller.service import Controller
from vnet.store import SqliteStore

from .helpers import refused

MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "networks": [{"name": "n2", "tenant": "t"}],
    "subnets": [
        {"name": "s2", "tenant": "t", "network": "n2", "cidr": "10.0.2.0/24"},
        {"name": "s2v6", "tenant": "t", "network": "n2", "cidr": "fd00:2::/64"},
    ],
    "routers": [{"name": "r", "tenant": "t", "interfaces": [{"subnet": "s2"}, {"subnet": "s2v6"}]}],
}
MAC = "02:aa:bb:cc:dd:ee"


@pytest.fixture
def world() -> Iterator[tuple[Controller, Client]]:
    ctl = Controller(SqliteStore())
    with TestClient(create_app(ctl)) as http:
        c = Client("http://testserver", http=http)
        c.apply(MODEL)
        yield ctl, c


def _learn(ctl: Controller, ip: str) -> Any:
    st = ctl.nb.state()
    (r,) = st.all("router")
    (n,) = st.all("network")
    return ctl.nb.learn(r.id, n.id, ip, MAC, 1_000_000.0)


def test_learned_neighbours_are_listed_and_got(world: tuple[Controller, Client]) -> None:
    ctl, c = world
    assert c.list("neighbours") == []
    n4 = _learn(ctl, "10.0.2.77")
    _learn(ctl, "fd00:2::77")
    got = {o["ip"]: o for o in c.list("neighbours")}
    assert set(got) == {"10.0.2.77", "fd00:2::77"}
    o = got["10.0.2.77"]
    (r,) = ctl.nb.state().all("router")
    assert (o["router"], o["mac"], o["seen_at"], o["name"], o["id"]) == (
        r.id, MAC, 1_000_000.0, "10.0.2.77", n4.id,
    )  # fmt: skip
    assert c.get("neighbour", n4.id)["ip"] == "10.0.2.77"
    assert [x["ip"] for x in c.list("neighbours", tenant="t")] == ["10.0.2.77", "fd00:2::77"]


def test_every_user_write_is_refused_naming_the_kind(world: tuple[Controller, Client]) -> None:
    ctl, c = world
    n = _learn(ctl, "10.0.2.77")
    (r,) = ctl.nb.state().all("router")
    body = {"name": "x", "router": r.id, "network": n.network, "ip": "10.0.2.78", "mac": MAC}
    writes: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (c.create, ("neighbour",), body),
        (c.update, ("neighbour", n.id, {"mac": "02:00:00:00:00:01"}), {}),
        (c.delete, ("neighbour", n.id), {}),
    ]
    for fn, args, kw in writes:
        e = refused(c, 422, fn, *args, **kw)
        assert "neighbours are learned and written by the controller" in e.message
    doc = copy.deepcopy(MODEL)
    doc["neighbours"] = [body]
    e = refused(c, 422, c.apply, doc)
    assert e.loc == ["neighbours"] and "neighbours" in e.message
    e = refused(c, 422, c.create_all, {"neighbours": [body]})
    assert e.loc == ["neighbours"]
    # a bare POST is refused the same way, not by the body's schema
    e = refused(c, 422, c.create, "neighbour")
    assert "learned and written by the controller" in e.message
    assert [x["ip"] for x in c.list("neighbours")] == ["10.0.2.77"]


def test_applying_a_model_file_leaves_learned_neighbours_alone(
    world: tuple[Controller, Client],
) -> None:
    ctl, c = world
    _learn(ctl, "10.0.2.77")
    res = c.apply(MODEL)
    assert res["changes"] == []
    assert len(c.list("neighbours")) == 1
    c.delete("router", "r")  # the router's neighbours go with it
    assert c.list("neighbours") == []
