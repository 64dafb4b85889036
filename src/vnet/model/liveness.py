"""Chassis liveness: what chassis' BFD sessions say of each other, and who is live.

Every chassis runs BFD to the chassis it needs to reach through a gateway
(and gateway chassis to all), and the controller keeps what each reports as
one object per reporting chassis (`objects.BFDStatus`, a kind of
`SYSTEM_KINDS`: users read it, only the controller writes it): its id is
the reporting chassis' id, its name that chassis' name, and `sessions` maps
each peer chassis (id) to the session's state there -- "up", "down",
"init" or "admin_down".  `admit_bfd_status` takes only a report of an
existing chassis about other existing chassis; a chassis' deletion takes its
own report with it and its entry out of the others' (`rules.plan_delete`).

A chassis programmed by an agent (`vnet agent run`) has the agent's own
report too (`objects.ChassisStatus`, `admit_chassis_status`): whether it holds
its switch's session and which ports it made up; it goes with the chassis, and
a port's deletion takes the port out of it.

`down(state, chassis_id)`: a chassis is down only when at least one other
chassis reports a session to it and every chassis that reports one reports
it not "up".  No report about a chassis leaves it live, so a deployment
without BFD routes as it always did; a chassis cut from the controller (its
own report stale) keeps whatever the others report of it -- while its BFD
to them is up it stays live, and no gateway fails over because the
controller lost a connection.  `model.l3.active_gateway` takes the first
live chassis of a router's gateway chassis.
"""

from __future__ import annotations

from .objects import BFDStatus, Chassis, ChassisStatus, Resource
from .state import ModelError, State

__all__ = ["BFD_STATES", "admit_bfd_status", "admit_chassis_status", "down", "reports_about"]

BFD_STATES = ("up", "down", "init", "admin_down")  # RFC 5880's session states


def admit_bfd_status(state: State, obj: Resource, old: Resource | None) -> Resource:
    """`obj` completed (its name the chassis') or refused naming the field."""
    assert isinstance(obj, BFDStatus)
    ch = state.get("chassis", obj.id)
    if not isinstance(ch, Chassis):
        raise ModelError(
            "invalid", ("id",), f"no chassis {obj.id!r} (a report's id is its chassis')"
        )
    for peer in obj.sessions:
        if peer == obj.id:
            raise ModelError("invalid", ("sessions", peer), "a chassis has no session to itself")
        if state.get("chassis", peer) is None:
            raise ModelError("invalid", ("sessions", peer), f"no chassis {peer!r}")
    return obj.changed(name=ch.name)


def admit_chassis_status(state: State, obj: Resource, old: Resource | None) -> Resource:
    """An agent's report of its chassis (its name the chassis'), or refused naming the
    field: the chassis and every port it says is up must exist."""
    assert isinstance(obj, ChassisStatus)
    ch = state.get("chassis", obj.id)
    if not isinstance(ch, Chassis):
        raise ModelError(
            "invalid", ("id",), f"no chassis {obj.id!r} (a report's id is its chassis')"
        )
    for i, pid in enumerate(obj.ports_up):
        if state.get("port", pid) is None:
            raise ModelError("invalid", ("ports_up", i), f"no port {pid!r}")
    return obj.changed(name=ch.name, ports_up=sorted(set(obj.ports_up)))


def reports_about(state: State, chassis_id: str) -> dict[str, str]:
    """What each other chassis reports of its session to `chassis_id` (reporter -> state)."""
    out: dict[str, str] = {}
    for rep in state.objects.get("bfd_status", {}).values():
        assert isinstance(rep, BFDStatus)
        s = rep.sessions.get(chassis_id)
        if s is not None and rep.id != chassis_id:
            out[rep.id] = s
    return out


def down(state: State, chassis_id: str) -> bool:
    """Whether `chassis_id` is down: someone reports a session to it, and no one sees it up."""
    seen = reports_about(state, chassis_id)
    return bool(seen) and all(s != "up" for s in seen.values())
