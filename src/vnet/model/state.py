"""A snapshot of the model, and the error a refused request raises.

`State` is what admission (`rules`, `l3`) checks an object against: kind ->
id -> object at a store revision.  It is never changed in place -- `apply`
returns a new snapshot -- so a refused request leaves nothing behind.
`ModelError` names the field it refuses (`loc`, a path into the request) and
says whether the request was invalid (422), in conflict with the model
(409) or named nothing (404); the API, the SDK and the CLI all show it as is.

The small helpers here (`unique_name`, `allocate`, `derived_mac`) are shared
by every kind's admission: names unique per scope, the lowest free address of
a subnet's pools, a locally administered MAC derived from names that persist.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .objects import KINDS, Port, Resource, Subnet

__all__ = [
    "Change",
    "ModelError",
    "State",
    "allocate",
    "derived_mac",
    "in_tenant",
    "unique_name",
]


class ModelError(ValueError):
    """A refused request: `status` is invalid (422), conflict (409) or missing (404)."""

    def __init__(self, status: str, loc: Sequence[str | int], message: str) -> None:
        self.status = status
        self.loc = tuple(loc)
        self.message = message
        where = ".".join(str(x) for x in self.loc)
        super().__init__(f"{where}: {message}" if where else message)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "loc": list(self.loc), "message": self.message}


@dataclass(frozen=True)
class Change:
    """One step of a transaction: put `obj`, or delete (`obj` is what goes)."""

    op: str  # put | delete
    obj: Resource
    expect: int | None = None  # the revision the caller read; None: no check

    @property
    def key(self) -> tuple[str, str]:
        return (self.obj.kind, self.obj.id)


@dataclass
class State:
    """A snapshot of the model: kind -> id -> object, at a store revision."""

    objects: dict[str, dict[str, Resource]] = field(default_factory=dict)
    revision: int = 0

    @staticmethod
    def of(objs: Iterable[Resource], revision: int = 0) -> State:
        s = State({k: {} for k in KINDS}, revision)
        for o in objs:
            s.objects[o.kind][o.id] = o
        return s

    def all(self, kind: str) -> list[Any]:
        return sorted(self.objects.get(kind, {}).values(), key=lambda o: (o.name, o.id))

    def get(self, kind: str, oid: str) -> Any:
        return self.objects.get(kind, {}).get(oid)

    def find(self, kind: str, ref: str, tenant: str | None = None) -> Any:
        """By id, else by name (within `tenant` if given); None if there is none."""
        o = self.get(kind, ref)
        if o is not None:
            return o
        hits = [
            o
            for o in self.objects.get(kind, {}).values()
            if o.name == ref and (tenant is None or getattr(o, "tenant", tenant) == tenant)
        ]
        if len(hits) > 1:
            tenants = sorted({self._tenant_name(getattr(o, "tenant", "")) for o in hits})
            raise ModelError(
                "invalid",
                (kind,),
                f"{kind} {ref!r} is ambiguous (in tenants {', '.join(tenants)}); name the tenant or give the id",
            )
        return hits[0] if hits else None

    def _tenant_name(self, tid: str) -> str:
        t = self.get("tenant", tid)
        return t.name if t is not None else tid

    def copy(self) -> State:
        return State({k: dict(v) for k, v in self.objects.items()}, self.revision)

    def apply(self, changes: Iterable[Change]) -> State:
        s = self.copy()
        for c in changes:
            bucket = s.objects.setdefault(c.obj.kind, {})
            if c.op == "put":
                bucket[c.obj.id] = c.obj
            else:
                bucket.pop(c.obj.id, None)
        return s

    def ports_of(self, network_id: str) -> list[Port]:
        return [p for p in self.all("port") if p.network == network_id]

    def subnets_of(self, network_id: str) -> list[Subnet]:
        subs = [s for s in self.all("subnet") if s.network == network_id]
        return sorted(subs, key=lambda s: (s.ip_version, ipaddress.ip_network(s.cidr)))


def unique_name(state: State, obj: Resource, scope: str | None) -> None:
    """Refuse `obj` if another object of its kind has its name in `scope` (a tenant's id)."""
    for o in state.objects.get(obj.kind, {}).values():
        if o.name == obj.name and o.id != obj.id and getattr(o, "tenant", None) == scope:
            where = f" in tenant {scope}" if scope else ""
            raise ModelError("conflict", ("name",), f"{obj.kind} {obj.name!r} exists{where}")


def allocate(sub: Subnet, taken: Iterable[str]) -> str | None:
    """The lowest address of `sub`'s pools that is neither taken nor its gateway."""
    used = set(taken) | {sub.gateway}
    for pool in sub.allocation_pools:
        a, b = ipaddress.ip_address(pool.start), ipaddress.ip_address(pool.end)
        n = int(b) - int(a) + 1
        for k in range(min(n, 1 << 20)):  # a /64 is not walked to its end
            cand = str(a + k)
            if cand not in used:
                return cand
    return None


def derived_mac(*parts: object) -> str:
    """A locally administered unicast MAC: 02 and the first 5 bytes of the SHA-256 of
    the parts joined by '/' (a port: its id and a salt)."""
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *h[:5]))


def in_tenant(state: State, obj: Resource, old: Resource | None) -> str:
    """The tenant of a kind that names its own (a group, a policy, a router, a floating
    IP): it exists, it does not change, and the name is unique in it."""
    tenant = str(getattr(obj, "tenant", ""))
    if state.get("tenant", tenant) is None:
        raise ModelError("invalid", ("tenant",), f"no tenant {tenant!r}")
    if old is not None and getattr(old, "tenant", None) != tenant:
        raise ModelError("invalid", ("tenant",), f"a {obj.kind} cannot move to another tenant")
    unique_name(state, obj, tenant)
    return tenant
