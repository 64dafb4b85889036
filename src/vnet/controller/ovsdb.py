"""An Open vSwitch chassis over OVSDB: its bridge and ports, as the model says.

For a chassis with `switch: ovs` the controller owns one bridge in that
host's Open vSwitch database (the chassis' `ovsdb` remote), through the
ovsdbapp library.  `OvsdbBridge.ensure` makes the bridge what the model
says -- datapath type, the chassis' datapath id, OpenFlow 1.3 only, fail
mode secure, the controller's own OpenFlow address -- and plugs the model's
ports bound to the chassis (by interface name, marked with
`external_ids:vnet-port=<port id>`), unplugging ports it plugged that the
model no longer binds there.  Ports vnet did not plug are left alone.  The
flow-based tunnel ports (`vtep-vxlan`, `vtep-geneve`: `remote_ip=flow`,
`key=flow`, `local_ip` the chassis' underlay address) are plugged the same
way, marked `vnet-port=tunnel:<kind>`, and so is the uplink of each of the
chassis' physical networks (`physnets`, the localnet port of the external
networks on it), a system interface marked `vnet-port=physnet:<name>`.

Everything is read from ovsdbapp's local replica first and written only if
it differs: re-writing a controller row would make ovs-vswitchd drop and
re-dial its OpenFlow connection, so an unchanged model writes nothing.  The
flows themselves go over OpenFlow like any other switch's.

ovsdbapp is synchronous (its IDL runs in a thread of its own); the
controller calls `ensure` from a worker thread.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..model.objects import tunnel_iface

__all__ = ["OWNER_KEY", "OvsdbBridge", "OvsdbError"]

log = logging.getLogger("vnet.controller.ovsdb")

OWNER_KEY = "vnet-port"


class OvsdbError(RuntimeError):
    pass


def _api(remote: str, timeout: float) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ovs library probes for eventlet
        from ovsdbapp.backend.ovs_idl import connection
        from ovsdbapp.schema.open_vswitch import impl_idl
    try:
        idl = connection.OvsdbIdl.from_server(remote, "Open_vSwitch")
    except Exception as e:  # the ovs library raises bare Exceptions
        raise OvsdbError(f"{remote}: {e}") from e

    class NoWait(impl_idl.OvsVsctlTransaction):  # type: ignore[misc]
        # like `ovs-vsctl --no-wait`: committed is done; whether ovs-vswitchd made the
        # bridge shows as its OpenFlow connection, and waiting here would stall the keeper
        def do_post_commit(self, txn: Any) -> None:
            pass

    def create_transaction(self: Any, check_error: bool = False, log_errors: bool = True,
                           **_kw: Any) -> Any:  # fmt: skip
        return NoWait(self, self.ovsdb_connection, check_error=check_error, log_errors=log_errors)

    conn = connection.Connection(idl=idl, timeout=timeout)
    # ovsdbapp keeps one connection per API class: one class per database
    cls = type(
        "VnetOvsdb",
        (impl_idl.OvsdbIdl,),
        {"_ovsdb_connection": None, "create_transaction": create_transaction},
    )
    return cls(conn)


class OvsdbBridge:
    def __init__(self, remote: str, bridge: str, timeout: float = 10.0) -> None:
        self.remote = remote
        self.bridge = bridge
        self.timeout = timeout
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = _api(self.remote, self.timeout)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.ovsdb_connection.stop()
            self._api = None

    def _row(self, table: str, name: str) -> Any:
        rows = self.api.tables[table].rows.values()
        return next((r for r in rows if r.name == name), None)

    def ensure(
        self,
        *,
        datapath_id: str,
        controllers: Sequence[str],
        datapath_type: str,
        ports: Mapping[str, str],
        tunnels: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Make the bridge and its vnet ports match; returns what was changed.

        `ports`: interface name -> port id; `tunnels`: encapsulation -> local address.
        """
        want: dict[str, tuple[str, dict[str, Any]]] = {n: (p, {}) for n, p in ports.items()}
        for kind, local in (tunnels or {}).items():
            opts = {"remote_ip": "flow", "key": "flow", "local_ip": local}
            want[tunnel_iface(kind)] = (f"tunnel:{kind}", {"type": kind, "options": opts})
        api, br = self.api, self.bridge
        changes: list[str] = []
        try:
            with api.transaction(check_error=True) as txn:
                row = self._row("Bridge", br)
                if row is None:
                    txn.add(api.add_br(br, datapath_type=datapath_type))
                    changes.append(f"bridge {br} created")
                wanted: dict[str, Any] = {
                    "datapath_type": datapath_type,
                    "fail_mode": ["secure"],
                    "protocols": ["OpenFlow13"],
                }
                have: dict[str, Any] = {}
                if row is not None:
                    have = {
                        "datapath_type": row.datapath_type,
                        "fail_mode": list(row.fail_mode),
                        "protocols": list(row.protocols),
                    }
                sets: list[tuple[str, Any]] = [
                    (k, v) for k, v in wanted.items() if have.get(k) != v
                ]
                other = dict(row.other_config) if row is not None else {}
                if other.get("datapath-id") != datapath_id:
                    sets.append(("other_config", {**other, "datapath-id": datapath_id}))
                if sets:
                    txn.add(api.db_set("Bridge", br, *sets))
                    changes += [f"bridge {br} {k}" for k, _ in sets]
                targets = sorted(c.target for c in row.controller) if row is not None else []
                if targets != sorted(controllers):
                    txn.add(api.set_controller(br, list(controllers)))
                    changes.append(f"bridge {br} controller {', '.join(controllers)}")
                mine = self._vnet_ports(row)
                for name, (owner, attrs) in sorted(want.items()):
                    spec = (owner, attrs.get("type", ""), attrs.get("options", {}))
                    if mine.get(name) == spec:
                        continue
                    if name in mine:
                        cols = [("external_ids", {OWNER_KEY: owner}), *attrs.items()]
                        txn.add(api.db_set("Interface", name, *cols))
                    else:
                        txn.add(api.add_port(br, name, external_ids={OWNER_KEY: owner}, **attrs))
                    changes.append(f"port {name} plugged")
                for name in sorted(set(mine) - set(want)):
                    txn.add(api.del_port(name, bridge=br))
                    changes.append(f"port {name} unplugged")
        except OvsdbError:
            raise
        except Exception as e:  # ovsdbapp raises its own and RuntimeErrors
            self.close()  # reconnect from scratch next time
            raise OvsdbError(f"{self.remote}: {type(e).__name__}: {str(e)[:300]}") from e
        return changes

    def _vnet_ports(self, row: Any) -> dict[str, tuple[str, str, dict[str, str]]]:
        """Interfaces on the bridge that vnet plugged: name -> (owner, type, options)."""
        if row is None:
            return {}
        out: dict[str, tuple[str, str, dict[str, str]]] = {}
        for port in row.ports:
            for iface in port.interfaces:
                owner = dict(iface.external_ids).get(OWNER_KEY)
                if owner is not None:
                    out[iface.name] = (owner, iface.type, dict(iface.options))
        return out

    def interfaces(self) -> dict[str, dict[str, Any]]:
        """Every interface on the bridge: name -> ofport, error, owner (for status and tests)."""
        row = self._row("Bridge", self.bridge)
        out: dict[str, dict[str, Any]] = {}
        if row is None:
            return out
        for port in row.ports:
            for iface in port.interfaces:
                out[iface.name] = {
                    "ofport": (list(iface.ofport) or [None])[0],
                    "error": (list(iface.error) or [None])[0],
                    "owner": dict(iface.external_ids).get(OWNER_KEY),
                }
        return out
