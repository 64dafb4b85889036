"""The northbound service: the one place requests become store transactions.

The REST API, the CLI's `apply` and the SDK all end here.  A request is
parsed into model objects (pydantic; errors carry the field path), names in
references resolved, each object admitted against a snapshot (`rules.admit`),
and only then is anything written: one store commit, with the revision every
changed object was read at, so a concurrent writer makes the commit fail
(409) instead of being overwritten.  A refused request changes nothing.

`plan` compares a whole desired model (a YAML file) with the store and
returns the creates, updates and deletes that make them equal, in dependency
order; `--dry-run` prints them, `apply` commits them in one transaction.
`create_all` only adds a file's objects to the model (`vnet create -f`), also
in one transaction, refusing any that exists.
Kinds the system writes (`SYSTEM_KINDS`: a router's learned neighbours,
chassis' BFD reports) are read here like any other and refused, naming the
kind, to every user write -- create, update, delete, a file's entry; the
controller stores them through `learn`, `report_bfd` and `forget`.
Fields the system allocates (VNI, MAC, addresses, datapath id) keep their
current values when the file leaves them out, so re-applying a file is a
no-op.  Kinds are admitted in dependency order (`ORDER`: security groups
before the ports that list them, policies last); the security groups of a
file are known by name before any of them is admitted, so their rules may
name each other in any order.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..model.objects import (
    ENCAPS,
    KINDS,
    ORDER,
    SYSTEM_KINDS,
    BFDStatus,
    ChassisStatus,
    Neighbour,
    Resource,
    SecurityGroup,
    new_id,
)
from ..model.rules import Change, ModelError, State, admit, plan_delete, resolve
from ..store import Op, StaleRevision, Store

__all__ = ["ALLOCATED", "Diff", "Northbound", "model_error", "parse"]

# fields the system fills in when a request leaves them out
ALLOCATED = {
    "network": ("segment_id", "mtu"),
    "subnet": ("gateway", "allocation_pools"),
    "port": ("mac", "fixed_ips", "tunnel_key"),
    "chassis": ("datapath_id",),
}
PLURALS = {c.plural: k for k, c in KINDS.items()}


def model_error(e: ValidationError, prefix: Sequence[str | int] = ()) -> ModelError:
    first = e.errors()[0]
    msg = str(first["msg"]).removeprefix("Value error, ")
    loc = (*prefix, *first["loc"])
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "is required"
    return ModelError("invalid", loc, msg)


def kind_of(name: str) -> str:
    k = PLURALS.get(name, name)
    if k not in KINDS:
        raise ModelError("invalid", ("kind",), f"unknown kind {name!r} (one of {', '.join(KINDS)})")
    return k


def writable(kind: str, loc: Sequence[str | int] = ("kind",)) -> None:
    """Refuse a user's write of a kind the system writes (a router's neighbours)."""
    if kind in SYSTEM_KINDS:
        plural = KINDS[kind].plural
        raise ModelError(
            "invalid", tuple(loc),
            f"{plural} are learned and written by the controller; they can be read, not written",
        )  # fmt: skip


def parse(kind: str, data: Mapping[str, Any], prefix: Sequence[str | int] = ()) -> Resource:
    if not isinstance(data, Mapping):
        raise ModelError("invalid", tuple(prefix), f"a {kind} must be a mapping of fields")
    try:
        return KINDS[kind].model_validate(dict(data))
    except ValidationError as e:
        raise model_error(e, prefix) from None


@dataclass(frozen=True)
class Diff:
    """One planned change: `old` None is a create, `new` None a delete."""

    kind: str
    old: Resource | None
    new: Resource | None

    @property
    def action(self) -> str:
        return "create" if self.old is None else "delete" if self.new is None else "update"

    def change(self) -> Change:
        if self.new is not None:
            return Change("put", self.new)
        assert self.old is not None
        return Change("delete", self.old)

    def fields(self) -> dict[str, tuple[Any, Any]]:
        a = self.old.spec() if self.old else {}
        b = self.new.spec() if self.new else {}
        return {
            k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)
        }


class Northbound:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._state: State | None = None

    # -- reading ------------------------------------------------------------------------
    def state(self) -> State:
        rev = self.store.revision()
        if self._state is None or self._state.revision != rev:
            rev, rows = self.store.snapshot()
            self._state = State.of((KINDS[k].model_validate(v) for k, _, _, v in rows), rev)
        return self._state

    def get(self, kind: str, ref: str, tenant: str | None = None) -> Resource:
        kind = kind_of(kind)
        st = self.state()
        scope = self._tenant_id(st, tenant)
        o = st.find(kind, ref, scope)
        if o is None:
            raise ModelError("missing", (), f"no {kind} {ref!r}")
        return o  # type: ignore[no-any-return]

    def list(
        self,
        kind: str,
        tenant: str | None = None,
        labels: Mapping[str, str] | None = None,
        **where: str,
    ) -> builtins.list[Resource]:
        kind = kind_of(kind)
        st = self.state()
        scope = self._tenant_id(st, tenant)
        out = []
        for o in st.all(kind):
            if scope is not None and getattr(o, "tenant", None) not in (scope, None):
                continue
            if kind == "tenant" and scope is not None and o.id != scope:
                continue
            if labels and any(o.labels.get(k) != v for k, v in labels.items()):
                continue
            if any(str(getattr(o, k, None)) != v for k, v in where.items()):
                continue
            out.append(o)
        return out

    @staticmethod
    def _tenant_id(st: State, tenant: str | None) -> str | None:
        if tenant is None:
            return None
        t = st.find("tenant", tenant)
        if t is None:
            raise ModelError("missing", ("tenant",), f"no tenant {tenant!r}")
        return t.id  # type: ignore[no-any-return]

    # -- writing ------------------------------------------------------------------------
    def create(self, kind: str, data: Mapping[str, Any]) -> Resource:
        kind = kind_of(kind)
        writable(kind)
        st = self.state()
        if "revision" in data:
            raise ModelError("invalid", ("revision",), "is set by the store")
        obj = parse(kind, resolve(st, kind, dict(data)))
        if st.get(kind, obj.id) is not None:
            raise ModelError("conflict", ("id",), f"{kind} {obj.id} exists")
        obj = admit(st, obj)
        rev = self._commit([Change("put", obj, expect=0)])
        return obj.changed(revision=rev)

    def migrate(self, ref: str, to: str, tenant: str | None = None) -> Resource:
        """Bind a port to another chassis (a workload that moved): its MAC, addresses and
        policy stay; only the binding changes."""
        ch = self.state().find("chassis", to)
        if ch is None:
            raise ModelError("invalid", ("to",), f"no chassis {to!r}")
        return self.update("port", ref, {"chassis": ch.id}, tenant=tenant)

    def update(
        self,
        kind: str,
        ref: str,
        data: Mapping[str, Any],
        revision: int | None = None,
        tenant: str | None = None,
    ) -> Resource:
        """Change the fields in `data`; with `revision`, only if nobody changed it since."""
        kind = kind_of(kind)
        writable(kind)
        st = self.state()
        old = self._read(kind, ref, tenant, revision)
        for k in ("id", "revision"):
            if k in data and data[k] != getattr(old, k):
                raise ModelError("invalid", (k,), "cannot change")
        merged = {**old.model_dump(mode="json", exclude={"revision"}), **dict(data)}
        obj = admit(st, parse(kind, resolve(st, kind, merged)), old)
        if obj.spec() == old.spec():
            return old
        rev = self._commit([Change("put", obj, expect=old.revision)])
        return obj.changed(revision=rev)

    def delete(
        self,
        kind: str,
        ref: str,
        cascade: bool = False,
        revision: int | None = None,
        tenant: str | None = None,
    ) -> builtins.list[Change]:
        kind = kind_of(kind)
        writable(kind)
        st = self.state()
        old = self._read(kind, ref, tenant, revision)
        changes = plan_delete(st, kind, old.id, cascade)
        self._commit(changes)
        return changes

    def _read(self, kind: str, ref: str, tenant: str | None, revision: int | None) -> Resource:
        """The object to change; a conflict if it moved past the revision the caller read."""
        old = self.get(kind, ref, tenant)
        if revision is not None and revision != old.revision:
            raise ModelError(
                "conflict",
                ("revision",),
                f"{kind} {old.name!r} is at revision {old.revision}, not {revision}",
            )
        return old

    def _commit(self, changes: Iterable[Change]) -> int:
        st = self.state()
        ops = []
        for c in changes:
            cur = st.get(c.obj.kind, c.obj.id)
            expect = c.expect if c.expect is not None else (cur.revision if cur else 0)
            value = c.obj.model_dump(mode="json", exclude={"revision"}) if c.op == "put" else None
            ops.append(Op(c.obj.kind, c.obj.id, value, expect))
        try:
            return self.store.commit(ops)
        except StaleRevision as e:
            raise ModelError("conflict", (e.kind,), f"changed meanwhile: {e}") from None

    # -- what the system writes -------------------------------------------------------------
    def learn(self, router: str, network: str, ip: str, mac: str, seen_at: float) -> Neighbour:
        """Store a router's neighbour (the controller's learning): created, or its MAC and
        time replaced; ModelError if the router cannot use it or a writer raced us."""
        st = self.state()
        data = {"name": "n", "router": router, "network": network, "ip": ip, "mac": mac,
                "seen_at": seen_at}  # fmt: skip
        obj = admit(st, parse("neighbour", data), None)
        old = st.get("neighbour", obj.id)
        rev = self._commit([Change("put", obj, expect=old.revision if old else 0)])
        out = obj.changed(revision=rev)
        assert isinstance(out, Neighbour)
        return out

    def report_bfd(self, chassis: str, sessions: Mapping[str, str]) -> BFDStatus | None:
        """Store what chassis `chassis`' BFD sessions say of its peers (the controller's
        learning); None when nothing changed.  ModelError if a chassis is unknown or a
        writer raced us."""
        st = self.state()
        obj = admit(st, parse("bfd_status", {"id": chassis, "sessions": dict(sessions)}), None)
        old = st.get("bfd_status", obj.id)
        assert isinstance(obj, BFDStatus) and (old is None or isinstance(old, BFDStatus))
        if old is not None and old.sessions == obj.sessions and old.name == obj.name:
            return None
        rev = self._commit([Change("put", obj, expect=old.revision if old else 0)])
        out = obj.changed(revision=rev)
        assert isinstance(out, BFDStatus)
        return out

    def report_chassis(
        self, chassis: str, switch: bool, ports_up: Iterable[str]
    ) -> ChassisStatus | None:
        """Store what a chassis' agent says of its chassis; None when nothing changed.
        ModelError if the chassis or a port is unknown, or a writer raced us."""
        st = self.state()
        doc = {"id": chassis, "switch": switch, "ports_up": sorted(set(ports_up))}
        obj = admit(st, parse("chassis_status", doc), None)
        old = st.get("chassis_status", obj.id)
        assert isinstance(obj, ChassisStatus)
        if old is not None and (old.switch, old.ports_up, old.name) == (
            obj.switch, obj.ports_up, obj.name
        ):  # fmt: skip
            return None
        rev = self._commit([Change("put", obj, expect=old.revision if old else 0)])
        out = obj.changed(revision=rev)
        assert isinstance(out, ChassisStatus)
        return out

    def forget(self, gone: Iterable[Resource]) -> int:
        """Delete objects of a system kind as they were read (aged-out neighbours); the
        number deleted (0 when another writer changed one meanwhile: nothing is)."""
        changes = [Change("delete", o, expect=o.revision) for o in gone]
        if not changes:
            return 0
        for c in changes:
            if c.obj.kind not in SYSTEM_KINDS:
                raise ValueError(f"{c.obj.kind}: not a kind the system writes")
        try:
            self._commit(changes)
        except ModelError:
            return 0
        return len(changes)

    # -- declarative ----------------------------------------------------------------------
    def plan(self, doc: Mapping[str, Any]) -> builtins.list[Diff]:
        """What makes the store equal to `doc` ({plural: [objects]}); ModelError if it can't."""
        if not isinstance(doc, Mapping):
            raise ModelError("invalid", (), "a model file is a mapping of kinds to lists")
        st = self.state()
        work = State.of([], st.revision)  # the file's objects so far: the final model
        wanted: dict[str, set[str]] = {k: set() for k in KINDS}
        creates_updates: builtins.list[Diff] = []
        encap = doc.get("encap")  # the deployment's encapsulation: chassis that name none
        if encap is not None and encap not in ENCAPS:
            raise ModelError("invalid", ("encap",), f"{encap!r}: one of {', '.join(ENCAPS)}")
        for key in doc:
            if PLURALS.get(key, key) not in KINDS and key != "encap":
                raise ModelError("invalid", (key,), f"unknown kind (one of {', '.join(PLURALS)})")
            if key != "encap":
                writable(PLURALS.get(key, key), (key,))
        for kind in ORDER:
            plural = KINDS[kind].plural
            items = doc.get(plural, doc.get(kind)) or []
            if not isinstance(items, list):
                raise ModelError("invalid", (plural,), "must be a list")
            preset: dict[int, str] = {}
            if kind == "security_group":
                work, preset = self._forward(st, work, items)
            for i, raw in enumerate(items):
                loc: tuple[str | int, ...] = (plural, i)
                if not isinstance(raw, Mapping):
                    raise ModelError("invalid", loc, f"a {kind} must be a mapping of fields")
                try:
                    data = resolve(work, kind, dict(raw))
                    if kind == "chassis" and encap is not None:
                        data.setdefault("encap", encap)
                    old = self._match(st, kind, data)
                    if old is None and i in preset:
                        data.setdefault("id", preset[i])
                    if old is not None:
                        data["id"] = old.id
                        for f in ALLOCATED.get(kind, ()):
                            if f not in raw:
                                data[f] = (
                                    getattr(old, f)
                                    if f != "allocation_pools"
                                    else [p.model_dump() for p in getattr(old, f)]
                                )
                    obj = admit(work, parse(kind, data), old)
                except ModelError as e:
                    raise ModelError(e.status, (*loc, *e.loc), e.message) from None
                if obj.id in wanted[kind]:
                    raise ModelError(
                        "invalid", (*loc, "name"), f"{kind} {obj.name!r} is given twice"
                    )
                wanted[kind].add(obj.id)
                work = work.apply([Change("put", obj)])
                if old is None or obj.spec() != old.spec():
                    creates_updates.append(Diff(kind, old, obj))
        deletes: builtins.list[Diff] = []
        for kind in reversed(ORDER):
            for o in st.all(kind):
                if o.id not in wanted[kind]:
                    deletes.append(Diff(kind, o, None))
        return deletes + creates_updates

    def _forward(
        self, st: State, work: State, items: builtins.list[Any]
    ) -> tuple[State, dict[int, str]]:
        """`work` with a bare stand-in for each of the file's security groups (name, tenant and
        id), so a rule may name a group the file defines further down; the ids by position."""
        ids: dict[int, str] = {}
        seen: set[tuple[str, str]] = set()
        for i, raw in enumerate(items):
            if not isinstance(raw, Mapping):
                continue
            try:
                data = resolve(
                    work, "security_group", {"name": raw.get("name"), "tenant": raw.get("tenant")}
                )
                old = self._match(st, "security_group", data)
                oid = old.id if old is not None else raw.get("id") or new_id()
                stub = SecurityGroup.model_validate({**data, "id": oid})
            except (ModelError, ValidationError):
                continue  # the full pass says what is wrong with it
            if (stub.tenant, stub.name) in seen:
                raise ModelError(
                    "invalid",
                    ("security_groups", i, "name"),
                    f"security_group {stub.name!r} is given twice",
                )
            seen.add((stub.tenant, stub.name))
            work = work.apply([Change("put", stub)])
            ids[i] = oid
        return work, ids

    @staticmethod
    def _match(st: State, kind: str, data: Mapping[str, Any]) -> Resource | None:
        oid = data.get("id")
        if isinstance(oid, str):
            o = st.get(kind, oid)
            if o is not None:
                return o  # type: ignore[no-any-return]
        name = data.get("name")
        if kind in ("tenant", "chassis"):
            return next((o for o in st.all(kind) if o.name == name), None)
        scope = data.get("tenant")
        if kind in ("subnet", "port"):  # the network's tenant (the network was matched first)
            net = st.get("network", str(data.get("network")))
            scope = net.tenant if net is not None else scope
        return next((o for o in st.all(kind) if o.name == name and o.tenant == scope), None)

    def apply(self, doc: Mapping[str, Any]) -> builtins.list[Diff]:
        diffs = self.plan(doc)
        changes = [d.change() for d in diffs]
        if changes:
            self._commit(changes)
        return diffs

    def create_all(self, doc: Mapping[str, Any]) -> builtins.list[Resource]:
        """Add the objects of `doc` ({plural: [objects]}) to the model in one transaction,
        in dependency order, each admitted against the model and the file's objects before
        it; one that exists already (by id, or by name in its scope) is refused."""
        if not isinstance(doc, Mapping):
            raise ModelError("invalid", (), "a model file is a mapping of kinds to lists")
        for key in doc:
            if PLURALS.get(key, key) not in KINDS:
                raise ModelError("invalid", (key,), f"unknown kind (one of {', '.join(PLURALS)})")
            writable(PLURALS.get(key, key), (key,))
        st = self.state()
        work, made = st, []
        for kind in ORDER:
            plural = KINDS[kind].plural
            items = doc.get(plural, doc.get(kind)) or []
            if not isinstance(items, list):
                raise ModelError("invalid", (plural,), "must be a list")
            for i, raw in enumerate(items):
                loc: tuple[str | int, ...] = (plural, i)
                if not isinstance(raw, Mapping):
                    raise ModelError("invalid", loc, f"a {kind} must be a mapping of fields")
                try:
                    if "revision" in raw:
                        raise ModelError("invalid", ("revision",), "is set by the store")
                    data = resolve(work, kind, dict(raw))
                    if self._match(work, kind, data) is not None:
                        raise ModelError(
                            "conflict", ("name",), f"{kind} {raw.get('name')!r} exists"
                        )
                    obj = admit(work, parse(kind, data))
                except ModelError as e:
                    raise ModelError(e.status, (*loc, *e.loc), e.message) from None
                work = work.apply([Change("put", obj)])
                made.append(obj)
        if not made:
            return []
        rev = self._commit([Change("put", o, expect=0) for o in made])
        return [o.changed(revision=rev) for o in made]
