"""Python SDK over the REST API.

    from vnet.client import Client
    c = Client("http://127.0.0.1:8080")
    net = c.create("network", name="web", tenant="blue")
    c.update("network", "web", {"mtu": 1400}, revision=net["revision"], tenant="blue")

Every call returns the JSON the API answered; an error answer raises
`ApiError` with the API's status (422, 409, 404), the field path and the
message.  Kinds may be given singular or plural (`security-group` as
`security_group`, `floating-ips` as `floating_ips`).  A `token` (or
$VNET_TOKEN) is sent as a bearer token, for an API that asks for one.
"""

from __future__ import annotations

import builtins
import os
from typing import Any

import httpx

__all__ = ["DEFAULT_API", "ApiError", "Client"]

DEFAULT_API = "http://127.0.0.1:8080"
PLURAL = {
    "tenant": "tenants",
    "network": "networks",
    "subnet": "subnets",
    "port": "ports",
    "chassis": "chassis",
    "security_group": "security_groups",
    "policy": "policies",
    "router": "routers",
    "floating_ip": "floating_ips",
    "neighbour": "neighbours",  # written by the controller: read only
    "bfd_status": "bfd_statuses",  # written by the controller: read only
    "chassis_status": "chassis_statuses",  # written by the chassis' agents: read only
}


class ApiError(Exception):
    def __init__(self, status: int, loc: list[Any], message: str) -> None:
        self.status, self.loc, self.message = status, loc, message
        where = ".".join(str(x) for x in loc)
        super().__init__(f"{where}: {message}" if where else message)


def _plural(kind: str) -> str:
    k = kind.lower().replace("-", "_")
    if k in PLURAL.values():
        return k
    if k in PLURAL:
        return PLURAL[k]
    raise ApiError(0, ["kind"], f"unknown kind {kind!r} (one of {', '.join(PLURAL)})")


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        http: httpx.Client | None = None,
        timeout: float = 30,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url or os.environ.get("VNET_API", DEFAULT_API)
        token = token or os.environ.get("VNET_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ApiError(0, [], f"cannot reach the vnet API at {self.base_url}: {e}") from None
        if r.status_code == 204:
            return None
        try:
            body = r.json()
        except ValueError:
            body = {"error": {"loc": [], "message": r.text[:200] or r.reason_phrase}}
        if r.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            if not isinstance(err, dict):
                err = {"loc": [], "message": str(body)}
            raise ApiError(r.status_code, list(err.get("loc", [])), str(err.get("message")))
        return body

    @staticmethod
    def _params(**kw: Any) -> dict[str, Any]:
        return {k: v for k, v in kw.items() if v is not None}

    def list(
        self, kind: str, tenant: str | None = None, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        label = [f"{k}={v}" for k, v in (labels or {}).items()] or None
        while offset is not None:
            page = self._call(
                "GET",
                f"/v1/{_plural(kind)}",
                params=self._params(tenant=tenant, label=label, offset=offset, limit=1000),
            )
            out += page["items"]
            offset = page["next"]
        return out

    def get(self, kind: str, ref: str, tenant: str | None = None) -> dict[str, Any]:
        return self._call("GET", f"/v1/{_plural(kind)}/{ref}", params=self._params(tenant=tenant))  # type: ignore[no-any-return]

    def create(self, kind: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/v1/{_plural(kind)}", json=fields)  # type: ignore[no-any-return]

    def update(
        self,
        kind: str,
        ref: str,
        fields: dict[str, Any],
        revision: int | None = None,
        tenant: str | None = None,
    ) -> dict[str, Any]:
        body = dict(fields) if revision is None else {**fields, "revision": revision}
        return self._call(  # type: ignore[no-any-return]
            "PATCH", f"/v1/{_plural(kind)}/{ref}", json=body, params=self._params(tenant=tenant)
        )

    def delete(self, kind: str, ref: str, cascade: bool = False, tenant: str | None = None) -> None:
        params = self._params(tenant=tenant, cascade="true" if cascade else None)
        self._call("DELETE", f"/v1/{_plural(kind)}/{ref}", params=params)

    def migrate(self, port: str, to: str, tenant: str | None = None) -> dict[str, Any]:
        """Bind `port` to chassis `to`; its flows follow and its new chassis announces it."""
        return self._call(  # type: ignore[no-any-return]
            "POST", f"/v1/ports/{port}/migrate", json={"to": to}, params=self._params(tenant=tenant)
        )

    def create_all(self, doc: dict[str, Any]) -> builtins.list[dict[str, Any]]:
        """Add the objects of a model document ({plural: [objects]}) in one transaction:
        `[{kind, object}]`, the objects as stored, in the order they were admitted."""
        return self._call("POST", "/v1/create", json=doc)["created"]  # type: ignore[no-any-return]

    def apply(self, doc: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        params = {"dry_run": "true"} if dry_run else {}
        return self._call("POST", "/v1/apply", json=doc, params=params)  # type: ignore[no-any-return]

    def verify(
        self, tenant: str | None = None, src: str | None = None, dst: str | None = None
    ) -> dict[str, Any]:
        """The current model's reachability matrix proved on its compiled flows: `cells`
        (from `src`'s class, to `dst`'s), `disagreements`, `untried`."""
        params = self._params(tenant=tenant, **{"from": src, "to": dst})
        return self._call("GET", "/v1/verify", params=params, timeout=600)  # type: ignore[no-any-return]

    def drift(self, chassis: str, repair: bool = False) -> dict[str, Any]:
        params = {"repair": "true"} if repair else {}
        return self._call("GET", f"/v1/drift/{chassis}", params=params)  # type: ignore[no-any-return]

    def trace(
        self,
        port: str | None,
        packet: str = "",
        tenant: str | None = None,
        from_outside: str | None = None,
        chassis: str | None = None,
    ) -> dict[str, Any]:
        """A packet's path through every chassis it reaches (`text`, and `trace`: `path`,
        `nat`, `hops`, `ends`): from `port`, or from the physical network by external
        network `from_outside`'s uplink on `chassis`."""
        if from_outside is not None or port is None:
            params = self._params(
                packet=packet, tenant=tenant, from_outside=from_outside, chassis=chassis
            )
            return self._call("GET", "/v1/trace", params=params)  # type: ignore[no-any-return]
        params = self._params(packet=packet, tenant=tenant, chassis=chassis)
        return self._call("GET", f"/v1/trace/{port}", params=params)  # type: ignore[no-any-return]

    def flow_log(
        self,
        port: str | None = None,
        verdict: str | None = None,
        since: str | float | None = None,
        after: int | None = None,
        wait: float | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The connection log: `records` (oldest first) and `next`, the `after` of
        the next call to follow it (with `wait`, a long poll)."""
        params = self._params(
            port=port, verdict=verdict, since=since, after=after, wait=wait, limit=limit
        )
        read = self.http.timeout.read
        kw: dict[str, Any] = {}
        if wait and read is not None and read < wait + 2:
            kw["timeout"] = wait + 2  # the server may hold the answer that long
        return self._call("GET", "/v1/flows/log", params=params, **kw)  # type: ignore[no-any-return]

    def routes(self, router: str, tenant: str | None = None) -> dict[str, Any]:
        """A router's effective routing table: `routes`, each with its `cidr`, `kind`
        (connected, static, ecmp), `nexthops` (address and out interface),
        `installed` (else `why` not) and `origin`."""
        params = self._params(tenant=tenant)
        return self._call("GET", f"/v1/routers/{router}/routes", params=params)  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/v1/status")  # type: ignore[no-any-return]
