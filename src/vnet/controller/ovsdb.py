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

BFD (`controller.bfd`), as OVN's ovn-controller runs it: for each peer the
chassis runs a session to, a tunnel port of the peer's encapsulation with
`remote_ip=<peer>`, `key=0` (BFD rides key 0; with the flow-based port
beside it, frames with any other key still come in there) and
`bfd:enable=true`, the session's timers and `check_tnl_key=true`, named
`vbfd-<peer address in hex>` and marked `vnet-port=bfd:<peer>`
(`bfd_ports`).  Nothing but BFD uses it: `compiler.localize` knows a
switch's ports by the model's interface names, the `vtep-*` tunnel ports
and the uplinks only, so no flow matches or outputs to it, and Open vSwitch
runs the session itself.  The port goes when the session does.  What the
sessions say comes back as each Interface row's `bfd_status` (state "up",
"down", "init" or "admin_down"): the IDL's change notifications are watched,
and whenever the bridge's BFD ports' states change the whole of them,
by peer address (`bfd_report`), goes to `on_bfd` -- from the IDL's thread.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..model.liveness import BFD_STATES
from ..model.objects import tunnel_iface
from ..ofp.vnetext import BfdWant
from ..packet.addr import ip4_int, ip4_str

__all__ = ["OWNER_KEY", "OvsdbBridge", "OvsdbError", "bfd_iface", "bfd_ports", "bfd_report"]

log = logging.getLogger("vnet.controller.ovsdb")

OWNER_KEY = "vnet-port"


BFD_OWNER = "bfd:"  # the owner mark of a BFD port: bfd:<peer address>


class OvsdbError(RuntimeError):
    pass


def bfd_iface(peer: int) -> str:
    """The name of the BFD port to a peer (by its underlay IPv4 address): 13 characters."""
    return f"vbfd-{peer:08x}"


def bfd_ports(sessions: Iterable[BfdWant]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The BFD ports for `sessions`: interface name -> (owner mark, Interface columns)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for w in sessions:
        bfd = {"enable": "true", "min_tx": str(w.min_tx), "min_rx": str(w.min_rx),
               "mult": str(w.mult), "check_tnl_key": "true"}  # fmt: skip
        opts = {"remote_ip": ip4_str(w.peer), "key": "0"}
        out[bfd_iface(w.peer)] = (
            f"{BFD_OWNER}{ip4_str(w.peer)}",
            {"type": w.encap, "options": opts, "bfd": bfd},
        )
    return out


def bfd_report(ifaces: Iterable[tuple[str, Mapping[str, str]]]) -> dict[int, str]:
    """What BFD ports' `bfd_status` say, by peer address: (owner mark, bfd_status) pairs in.
    A port Open vSwitch has not reported on yet is left out; a state not of RFC 5880's
    four reads "down"."""
    out: dict[int, str] = {}
    for owner, status in ifaces:
        if not owner.startswith(BFD_OWNER) or "state" not in status:
            continue
        try:
            peer = ip4_int(owner[len(BFD_OWNER) :])
        except ValueError:
            continue  # not a mark this module wrote
        state = status["state"]
        out[peer] = state if state in BFD_STATES else "down"
    return out


def _api(remote: str, timeout: float, on_change: Callable[[Any], None] | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ovs library probes for eventlet
        from ovsdbapp.backend.ovs_idl import connection
        from ovsdbapp.schema.open_vswitch import impl_idl

    class Idl(connection.OvsdbIdl):  # type: ignore[misc]
        def notify(self, event: Any, row: Any, updates: Any = None) -> None:
            # called by the IDL's own thread once an update is applied to the replica
            if on_change is not None and row._table.name == "Interface":
                try:
                    on_change(self)
                except Exception:
                    log.exception("%s: the change handler failed", remote)

    try:
        idl = Idl.from_server(remote, "Open_vSwitch")
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
    def __init__(
        self,
        remote: str,
        bridge: str,
        timeout: float = 10.0,
        on_bfd: Callable[[dict[int, str]], None] | None = None,
    ) -> None:
        self.remote = remote
        self.bridge = bridge
        self.timeout = timeout
        self.on_bfd = on_bfd  # what the BFD ports say, by peer, on each change
        self._bfd_seen: dict[int, str] | None = None
        self._api: Any = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._bfd_seen = None  # a new connection reports afresh
            self._api = _api(self.remote, self.timeout, self._changed)
        return self._api

    def _changed(self, idl: Any) -> None:
        """An Interface row changed (the IDL's thread): report the BFD ports if they did."""
        if self.on_bfd is None:
            return
        got = bfd_report(self._bfd_status(idl.tables))
        if got != self._bfd_seen:
            self._bfd_seen = got
            self.on_bfd(dict(got))

    def _bfd_status(self, tables: Any) -> list[tuple[str, dict[str, str]]]:
        rows = tables["Bridge"].rows.values()
        row = next((r for r in rows if r.name == self.bridge), None)
        if row is None:
            return []
        out = []
        for port in row.ports:
            for iface in port.interfaces:
                owner = dict(iface.external_ids).get(OWNER_KEY, "")
                if owner.startswith(BFD_OWNER):
                    out.append((owner, dict(iface.bfd_status)))
        return out

    def bfd_states(self) -> dict[int, str]:
        """What the bridge's BFD ports say now, by peer address (`bfd_report`)."""
        with self.api.ovsdb_connection.lock:
            return bfd_report(self._bfd_status(self.api.tables))

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
        bfd: Sequence[BfdWant] = (),
    ) -> list[str]:
        """Make the bridge and its vnet ports match; returns what was changed.

        `ports`: interface name -> port id; `tunnels`: encapsulation -> local address;
        `bfd`: the BFD sessions the chassis runs (`bfd_ports`).
        """
        want: dict[str, tuple[str, dict[str, Any]]] = {n: (p, {}) for n, p in ports.items()}
        for kind, local in (tunnels or {}).items():
            opts = {"remote_ip": "flow", "key": "flow", "local_ip": local}
            want[tunnel_iface(kind)] = (f"tunnel:{kind}", {"type": kind, "options": opts})
        for name, bfd_port in bfd_ports(bfd).items():
            want.setdefault(name, bfd_port)  # a model port of that name keeps it
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
                    spec = (
                        owner,
                        attrs.get("type", ""),
                        attrs.get("options", {}),
                        attrs.get("bfd", {}),
                    )
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

    def _vnet_ports(self, row: Any) -> dict[str, tuple[str, str, dict[str, str], dict[str, str]]]:
        """Interfaces on the bridge that vnet plugged: name -> (owner, type, options, bfd)."""
        if row is None:
            return {}
        out: dict[str, tuple[str, str, dict[str, str], dict[str, str]]] = {}
        for port in row.ports:
            for iface in port.interfaces:
                owner = dict(iface.external_ids).get(OWNER_KEY)
                if owner is not None:
                    out[iface.name] = (owner, iface.type, dict(iface.options), dict(iface.bfd))
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
