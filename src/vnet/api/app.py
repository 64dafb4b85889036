"""The northbound REST API: a thin FastAPI adapter over the controller.

`/v1/{tenants,networks,subnets,ports,chassis,security_groups,policies,routers,
floating_ips,neighbours}` each with list (pagination,
filters by tenant and labels), get, create, update (PATCH; with `revision`
in the body, a stale one is refused with 409) and delete (`?cascade=true`);
`neighbours`, a router's learned neighbours, only list and get (a write is
refused with 422 naming the kind: the controller writes them).
Errors are JSON: `{"error": {"status", "loc", "message"}}` with 422 for
invalid input, 409 for conflicts, 404 for missing objects -- the same
`ModelError` the CLI prints.  Ports carry their status (`up` once their flows
are installed on their chassis), security groups their `members` (the
ports listed or selected).  `/v1/create` adds a file's objects (refusing
any that exists), `/v1/apply` takes a whole model (dry run or
not; a dry run also says which connections between ports it would open and
close, `reachability`, and which live connections it would cut, `cuts`: the
chassis' conntrack entries whose connection it denies, `controller.cut`);
`/v1/routers/{id}/routes` is a router's effective routing table (each
route's kind, next hops, out interface, whether it is installed and why
not, and where it came from); `/v1/verify` proves the current model's
reachability matrix on its compiled
flows (`lab.verify`), `/v1/drift/{chassis}` compares a switch with the model,
`/v1/flows/log` reads the connection log (filters by port, verdict and time;
`after` and `wait` make it a long poll for a follower), and `/openapi.json`
describes it all.

Route handlers are generated per kind from the model classes, so the
OpenAPI schema is the model's own.  (No `from __future__ import
annotations` here: FastAPI reads the handlers' annotations at definition.)
"""

import asyncio
import ipaddress
import signal
import time
from datetime import datetime
from enum import Enum
from typing import Any

import uvicorn
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..compiler.router import ECMP_MAX
from ..controller.cut import survey, trackers
from ..controller.flowlog import VERDICTS
from ..controller.northbound import Diff
from ..controller.service import Controller
from ..lab.verify import Report, check
from ..model.objects import KINDS, SYSTEM_KINDS, Port, Resource, Router, SecurityGroup
from ..model.policy import Evaluator, Reach, delta
from ..model.routing import interfaces, table
from ..model.rules import ModelError, State
from ..pipeline.ofctl import format_flow

__all__ = ["create_app", "serve"]

STATUS = {"invalid": 422, "conflict": 409, "missing": 404}


def _labels(items: list[str] | None) -> dict[str, str]:
    out = {}
    for i, item in enumerate(items or []):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ModelError("invalid", ("label", i), f"{item!r}: expected key=value")
        out[k] = v
    return out


def diff_json(d: Diff) -> dict[str, Any]:
    obj = d.new or d.old
    assert obj is not None
    return {
        "action": d.action,
        "kind": d.kind,
        "name": obj.name,
        "id": obj.id,
        "fields": {k: {"old": a, "new": b} for k, (a, b) in d.fields().items()},
    }


def reach_json(r: Reach, st: State) -> dict[str, Any]:
    step = r.after.step if r.opened else r.before.step
    t = st.get("tenant", r.tenant)
    return {
        "change": "opens" if r.opened else "closes",
        "tenant": t.name if t is not None else None,
        "from": list(r.src),
        "to": list(r.dst),
        "service": r.service.name,
        "ethertype": r.service.ethertype,
        "before": str(r.before),
        "after": str(r.after),
        "side": step.direction if step is not None else None,
    }


def verify_json(report: Report, src: str | None = None, dst: str | None = None) -> dict[str, Any]:
    """A verification's cells (those from `src`'s class, to `dst`'s), disagreements, untried."""
    cells = []
    for cell, got in report.cells:
        if src is not None and src not in {p.name for p in cell.src.ports}:
            continue
        if dst is not None and dst not in {p.name for p in cell.dst.ports}:
            continue
        want = cell.verdict
        cells.append({
            "from": str(cell.src), "to": str(cell.dst), "service": str(cell.service),
            "intended": want.action, "reason": want.reason, "flows": got.action,
            "agrees": want.allowed == (got.action == "allow"),
        })  # fmt: skip
    return {
        "cells": cells,
        "disagreements": [str(d) for d in report.disagreements],
        "untried": len(report.untried),
    }


def routes_json(st: State, r: Router) -> dict[str, Any]:
    """A router's effective routing table (`model.routing.table`) as the operator sees it:
    per route its kind (connected, static, ecmp), next hops with their out interface and
    the origin of each, whether the router's pipeline has it (`installed`, else `why`
    not) and its whole origin (a next hop that cannot be used has its origin there)."""
    itfs = {i.number: i for i in interfaces(st, r)}

    def net_name(net_id: str) -> str:
        n = st.get("network", net_id)
        return n.name if n is not None else net_id

    def hop(ip: str | None, number: int | None, origin: list[str]) -> dict[str, Any]:
        i = itfs.get(number) if number is not None else None
        return {
            "ip": ip,  # None: the destination itself (connected)
            "interface": number,
            "subnet": i.subnet_name if i is not None else None,
            "network": net_name(i.network) if i is not None else None,
            "address": i.address if i is not None else None,  # the router's, out there
            "origin": origin,
        }

    down = "" if r.admin_up else "the router is administratively down"
    if r.tunnel_key is None:
        down = "the router is not admitted (no datapath key)"
    rows, groups = [], 0
    for e in table(st, r):
        why = [down] if down else []
        origin = list(e.origin)
        # a static route's origin names each `routes` entry of its prefix, in order
        mine = [x for x in r.routes if ipaddress.ip_network(x.cidr) == e.prefix]
        of: dict[str, list[str]] = {}  # next hop (as the model holds it) -> its origins
        if e.kind == "static" and len(mine) == len(origin):
            for x, o in zip(mine, origin, strict=True):
                of.setdefault(x.nexthop, []).append(o)
        if e.nexthops:
            hops = [hop(h.ip, h.interface, of.get(h.ip or "", origin)) for h in e.nexthops]
            if len(e.nexthops) > 1 and not down:
                groups += 1
                if groups > ECMP_MAX:
                    why.append(f"more than {ECMP_MAX} ECMP prefixes: only via {e.nexthops[0].ip}")
        else:  # not installed: the next hops as configured
            hops = [hop(x.nexthop, None, of.get(x.nexthop, origin)) for x in mine]
        if e.note:
            why.append(e.note)
        rows.append({
            "cidr": e.cidr,
            "family": e.family,
            "kind": "ecmp" if len(e.nexthops) > 1 else e.kind,
            "nexthops": hops,
            "installed": e.active and not down,
            "why": "; ".join(why),
            "origin": origin,
        })  # fmt: skip
    t = st.get("tenant", r.tenant)
    return {
        "router": r.name,
        "id": r.id,
        "tenant": t.name if t is not None else r.tenant,
        "admin_up": r.admin_up,
        "routes": rows,
    }


def create_app(ctl: Controller) -> FastAPI:
    app = FastAPI(
        title="vnet",
        version=__version__,
        description="Declarative virtual networks: tenants, networks, subnets, ports, chassis, "
        "security groups, policies, routers and floating IPs.",
    )
    nb = ctl.nb

    @app.exception_handler(ModelError)
    async def _model_error(_: Request, e: ModelError) -> JSONResponse:
        return JSONResponse({"error": e.as_dict()}, status_code=STATUS[e.status])

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        loc = [x for x in first.get("loc", ()) if x != "body"]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            msg = "unknown field"
        body = {"status": "invalid", "loc": loc, "message": msg}
        return JSONResponse({"error": body}, status_code=422)

    evaluators: dict[int, Evaluator] = {}  # the latest revision's only

    def render(o: Resource) -> dict[str, Any]:
        d = o.model_dump(mode="json")
        if isinstance(o, Port):
            d["status"] = ctl.port_status(o)
        if isinstance(o, SecurityGroup):
            st = nb.state()
            if st.revision not in evaluators:
                evaluators.clear()
                evaluators[st.revision] = Evaluator(st)
            d["members"] = [p.id for p in evaluators[st.revision].members(o)]
        return d

    for kind, cls in KINDS.items():
        _routes(app, ctl, kind, cls, render)

    @app.post("/v1/apply", tags=["model"])
    async def apply(
        doc: dict[str, Any] = Body(..., description="{tenants: [...], networks: [...], ...}"),
        dry_run: bool = Query(False),
    ) -> dict[str, Any]:
        if dry_run:
            diffs = nb.plan(doc)
            before = nb.state()
            after = before.apply(d.change() for d in diffs)
            cuts = await survey(before, after, trackers(before, ctl.sessions.values()), False)
            return {
                "dry_run": True,
                "changes": [diff_json(d) for d in diffs],
                "reachability": [reach_json(r, after) for r in delta(before, after)],
                "cuts": cuts.as_dict(),
                "flow_mods": ctl.preview(diffs),
            }
        diffs = nb.apply(doc)
        ctl.kick()
        return {"dry_run": False, "changes": [diff_json(d) for d in diffs]}

    @app.post("/v1/create", tags=["model"], status_code=201)
    def create_all(
        doc: dict[str, Any] = Body(..., description="{routers: [...], floating_ips: [...], ...}"),
    ) -> dict[str, Any]:
        """Add a file's objects to the model, in one transaction; refused if one exists."""
        made = nb.create_all(doc)
        ctl.kick()
        return {"created": [{"kind": o.kind, "object": render(o)} for o in made]}

    @app.get("/v1/verify", tags=["model"])
    async def verify(
        tenant: str | None = None,
        src: str | None = Query(None, alias="from", description="cells from this port's class"),
        dst: str | None = Query(None, alias="to", description="cells to this port's class"),
    ) -> dict[str, Any]:
        """The current model's reachability matrix proved on its compiled flows."""
        st = nb.state()
        tid = None
        if tenant is not None:
            t = st.find("tenant", tenant)
            if t is None:
                raise ModelError("missing", ("tenant",), f"no tenant {tenant!r}")
            tid = t.id
        report = await asyncio.to_thread(check, st, tid)
        return {"revision": st.revision, **verify_json(report, src, dst)}

    @app.get("/v1/drift/{chassis}", tags=["switches"])
    async def drift(chassis: str, repair: bool = False) -> dict[str, Any]:
        try:
            found = await ctl.drift(chassis, repair)
        except LookupError as e:
            raise ModelError("missing", (), str(e)) from None
        return {
            "chassis": chassis,
            "repaired": repair,
            "drift": [
                {"kind": d.kind, "flow": format_flow(d.flow), "origin": d.origin} for d in found
            ],
        }

    @app.get("/v1/trace/{port}", tags=["switches"])
    def trace(
        port: str,
        packet: str = Query("", description="flow syntax, e.g. icmp,nw_dst=10.0.0.11"),
        tenant: str | None = None,
        chassis: str | None = Query(
            None, description="refused: a port's packet starts on its chassis"
        ),
    ) -> dict[str, Any]:
        """A packet from a port's workload through every chassis it reaches: the
        datapaths and stages it crosses, each flow's origin, NAT before and after."""
        t = ctl.trace(port, packet, tenant, chassis=chassis)
        return {"text": t.format(), "trace": t.as_dict()}

    @app.get("/v1/trace", tags=["switches"], name="trace from outside")
    def trace_outside(
        from_outside: str = Query(..., description="the external network the packet comes from"),
        packet: str = Query(
            "", description="flow syntax, e.g. udp,nw_src=198.51.100.7,nw_dst=203.0.113.3,tp_dst=53"
        ),
        chassis: str | None = Query(
            None,
            description="whose uplink it enters by (default: "
            "the chassis that answers for the destination)",
        ),
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """A packet from the physical network, entering by an external network's uplink
        on a chassis, through every chassis it reaches."""
        t = ctl.trace(None, packet, tenant, from_outside=from_outside, chassis=chassis)
        return {"text": t.format(), "trace": t.as_dict()}

    @app.post("/v1/ports/{ref}/migrate", tags=["ports"], name="migrate port")
    async def migrate(
        ref: str,
        body: dict[str, Any] = Body(..., description='{"to": CHASSIS}: the chassis to bind to'),
        tenant: str | None = None,
    ) -> dict[str, Any]:
        """Rebind a port; answers once the switches forward to its new chassis."""
        to = body.get("to")
        if not isinstance(to, str) or not to:
            raise ModelError("invalid", ("to",), "the chassis to migrate to (name or id)")
        return render(await ctl.migrate(ref, to, tenant))

    @app.get("/v1/flows/log", tags=["switches"], name="connection log")
    async def flow_log(
        port: str | None = Query(None, description="records with this port (name) at either end"),
        verdict: str | None = Query(None, description="allow, deny or reject"),
        since: str | None = Query(None, description="seconds since the epoch, or ISO 8601"),
        after: int = Query(0, ge=0, description="records after this one (an answer's `next`)"),
        wait: float = Query(0, ge=0, le=60, description="seconds to wait for a match"),
        limit: int = Query(1000, ge=1, le=10_000, description="the newest this many"),
    ) -> dict[str, Any]:
        """What the firewall's logged rules decided, oldest first.  A follower asks
        again with `after` = the `next` it got; with `wait` the answer comes when a
        record matches or the time is up."""
        flow_log = ctl.punter.flow_log
        start = _since(since)
        if verdict is not None and verdict not in VERDICTS:
            raise ModelError("invalid", ("verdict",), f"{verdict!r}: one of {', '.join(VERDICTS)}")
        deadline = time.monotonic() + wait
        while True:
            records, last = flow_log.query(port, verdict, start, after, limit)
            left = deadline - time.monotonic()
            if records or left <= 0:
                break
            await flow_log.wait(max(after, last), left)
            after = max(after, last)  # what did not match need not be read again
        return {
            "records": [r.as_dict() for r in records],
            "next": last,
            "dropped": flow_log.dropped,
        }

    @app.get("/v1/routers/{ref}/routes", tags=["routers"], name="router's routes")
    def routes(ref: str, tenant: str | None = None) -> dict[str, Any]:
        """The router's effective routing table: longest prefix first per family, each
        route with its kind, next hops, out interface, whether it is installed (a
        shadowed or unusable route with why not) and the object and field it came from."""
        r = nb.get("router", ref, tenant)
        assert isinstance(r, Router)
        return routes_json(nb.state(), r)

    @app.get("/v1/status", tags=["switches"])
    def status() -> dict[str, Any]:
        return ctl.stats()

    return app


def _since(text: str | None) -> float | None:
    """`since` as seconds since the epoch: a number, or an ISO 8601 time (local if
    it names no zone)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ModelError(
            "invalid", ("since",), f"{text!r}: seconds since the epoch or an ISO 8601 time"
        ) from None


def _routes(app: FastAPI, ctl: Controller, kind: str, cls: type[Resource], render: Any) -> None:
    nb = ctl.nb
    plural = cls.plural

    tag: list[str | Enum] = [plural]

    @app.get(f"/v1/{plural}", tags=tag, name=f"list {plural}")
    def list_(
        tenant: str | None = None,
        label: list[str] | None = Query(None, description="key=value, repeatable"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        items = nb.list(kind, tenant=tenant, labels=_labels(label))
        page = items[offset : offset + limit]
        nxt = offset + limit if offset + limit < len(items) else None
        return {"items": [render(o) for o in page], "total": len(items), "next": nxt}

    @app.get(f"/v1/{plural}/{{ref}}", tags=tag, name=f"get {kind}")
    def get(ref: str, tenant: str | None = None) -> dict[str, Any]:
        return render(nb.get(kind, ref, tenant))  # type: ignore[no-any-return]

    # a kind the system writes takes any body: the northbound refuses it, naming the kind
    body_type: Any = dict[str, Any] if kind in SYSTEM_KINDS else cls

    @app.post(f"/v1/{plural}", tags=tag, name=f"create {kind}", status_code=201)
    def create(body: body_type) -> dict[str, Any]:
        data = body if isinstance(body, dict) else body.model_dump(mode="json", exclude_unset=True)
        obj = nb.create(kind, data)
        ctl.kick()
        return render(obj)  # type: ignore[no-any-return]

    @app.patch(f"/v1/{plural}/{{ref}}", tags=tag, name=f"update {kind}")
    def update(
        ref: str,
        body: dict[str, Any] = Body(
            ..., description=f"fields of the {kind} to change, and optionally the `revision` read"
        ),
        tenant: str | None = None,
    ) -> dict[str, Any]:
        data = dict(body)
        revision = data.pop("revision", None)
        if revision is not None and not isinstance(revision, int):
            raise ModelError("invalid", ("revision",), "must be an integer")
        obj = nb.update(kind, ref, data, revision=revision, tenant=tenant)
        ctl.kick()
        return render(obj)  # type: ignore[no-any-return]

    @app.delete(f"/v1/{plural}/{{ref}}", tags=tag, name=f"delete {kind}", status_code=204)
    def delete(
        ref: str, cascade: bool = False, tenant: str | None = None, revision: int | None = None
    ) -> Response:
        nb.delete(kind, ref, cascade=cascade, revision=revision, tenant=tenant)
        ctl.kick()
        return Response(status_code=204)


async def serve(ctl: Controller, host: str, port: int) -> None:
    """Serve the API on HOST:PORT until SIGTERM or SIGINT (the controller and the sim lab)."""
    config = uvicorn.Config(
        create_app(ctl), host=host, port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await server.serve()
