"""Chassis' BFD reports through the API: the controller writes them, users read them.

The controller stores what a chassis' BFD sessions say (`Northbound.report_bfd`);
the REST list and get show it; every user write is refused naming the kind and
changes nothing; a report naming an unknown chassis is refused naming the field;
deleting a chassis takes its report and the others' sessions to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vnet.api import create_app
from vnet.client import Client
from vnet.controller.service import Controller
from vnet.model.state import ModelError
from vnet.store import SqliteStore

from .helpers import refused

MODEL: dict[str, Any] = {
    "chassis": [{"name": f"hv{i}", "id": f"hv{i}", "underlay": f"192.0.2.{i}"} for i in (1, 2, 3)],
}


@pytest.fixture
def world() -> Iterator[tuple[Controller, Client]]:
    ctl = Controller(SqliteStore())
    with TestClient(create_app(ctl)) as http:
        c = Client("http://testserver", http=http)
        c.apply(MODEL)
        yield ctl, c


def test_reports_are_listed_and_got(world: tuple[Controller, Client]) -> None:
    ctl, c = world
    assert c.list("bfd_statuses") == []
    rep = ctl.nb.report_bfd("hv1", {"hv2": "up", "hv3": "down"})
    assert rep is not None
    assert ctl.nb.report_bfd("hv1", {"hv2": "up", "hv3": "down"}) is None  # unchanged: no write
    (o,) = c.list("bfd_statuses")
    assert (o["id"], o["name"], o["sessions"]) == ("hv1", "hv1", {"hv2": "up", "hv3": "down"})
    assert c.get("bfd_status", "hv1")["sessions"]["hv3"] == "down"
    ctl.nb.report_bfd("hv1", {"hv2": "init"})
    assert c.get("bfd_status", "hv1")["sessions"] == {"hv2": "init"}


def test_every_user_write_is_refused_naming_the_kind(world: tuple[Controller, Client]) -> None:
    ctl, c = world
    ctl.nb.report_bfd("hv1", {"hv2": "up"})
    before = c.list("bfd_statuses")
    writes: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (c.create, ("bfd_status",), {"id": "hv2", "sessions": {"hv1": "down"}}),
        (c.update, ("bfd_status", "hv1", {"sessions": {"hv2": "down"}}), {}),
        (c.delete, ("bfd_status", "hv1"), {}),
        (c.apply, ({**MODEL, "bfd_statuses": [{"id": "hv1", "sessions": {}}]},), {}),
    ]
    for fn, args, kw in writes:
        e = refused(c, 422, fn, *args, **kw)
        assert "bfd_statuses are learned and written by the controller" in e.message, e
    assert c.list("bfd_statuses") == before
    assert c.apply(MODEL)["changes"] == []  # a model file leaves the reports alone
    assert c.list("bfd_statuses") == before


def test_a_report_of_an_unknown_chassis_or_state_is_refused_naming_the_field(
    world: tuple[Controller, Client],
) -> None:
    ctl, _ = world
    bad: list[tuple[str, dict[str, str], tuple[Any, ...]]] = [
        ("hv9", {"hv2": "up"}, ("id",)),
        ("hv1", {"hv9": "up"}, ("sessions", "hv9")),
        ("hv1", {"hv1": "up"}, ("sessions", "hv1")),
        ("hv1", {"hv2": "sideways"}, ("sessions", "hv2")),
    ]
    for chassis, sessions, loc in bad:
        with pytest.raises(ModelError) as e:
            ctl.nb.report_bfd(chassis, sessions)
        assert e.value.loc == loc, (chassis, sessions, e.value)
    assert ctl.nb.state().all("bfd_status") == []


def test_deleting_a_chassis_takes_its_report_and_the_others_sessions_to_it(
    world: tuple[Controller, Client],
) -> None:
    ctl, c = world
    ctl.nb.report_bfd("hv1", {"hv2": "up", "hv3": "up"})
    ctl.nb.report_bfd("hv3", {"hv1": "up"})
    c.delete("chassis", "hv3")
    assert {o["id"]: o["sessions"] for o in c.list("bfd_statuses")} == {"hv1": {"hv2": "up"}}
