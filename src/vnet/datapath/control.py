"""The switch's control socket: JSON lines over a Unix socket.

`vnet switch add-port/del-port/show` and `vnet ofctl trace` talk to a running
switch here (OpenFlow itself goes through the management socket the agent
serves).  One request per line, `{"cmd": ..., "args": {...}}`; one answer per
line, `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.  A
bad request is answered with an error naming what is wrong; the switch is
unchanged and the connection stays open.

`ct-flush` forgets connections as `ovs-appctl dpctl/flush-conntrack` does:
all, a zone's, or (`tuple`, in its ct-orig-tuple syntax) those whose
original direction has the fields given -- how the controller cuts a
connection a policy change denies.

`bfd-add` / `bfd-del` run or stop a BFD session to a peer chassis over a
tunnel port (`vnet.datapath.bfd`); `bfd-show` reports every session's state
(Open vSwitch's bfd_status keys), the BFD frames dropped, by reason, and
whether the switch is isolated (`bfd.Monitor.isolated`) with how many flows
of the stand-down set are installed and how many match nothing for it.

`show` also says the switch-wide port-security default (what `add-port`
gives a port whose spec does not say) and, through `info`, what the layers
above the datapath report (the OpenFlow agent's connections): the datapath
does not import them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from ..packet.addr import ip4_int, ip6_int, mac_str
from ..pipeline.fields import FieldError
from ..pipeline.ofctl import FlowSyntaxError, parse_packet
from .bfd import BfdConfigError
from .conntrack import Conn, format_conn
from .ipf import MAX_FRAGS_BOUND, MIN_FRAG_BOUND
from .port import PortConfigError, parse_port_spec
from .runner import Runner
from .switch import SwitchError

__all__ = ["ControlServer", "JsonLineServer", "orig_tuple", "request", "rundir"]


def rundir() -> str:
    d = os.environ.get("VNET_RUNDIR")
    if d:
        return d
    if os.geteuid() == 0:
        return "/run/vnet"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/vnet-{os.getuid()}"
    return os.path.join(base, "vnet")


class JsonLineServer:
    """A Unix socket answering `{"cmd", "args"}` lines from `commands`; `errors` are answers."""

    errors: tuple[type[Exception], ...] = ()

    def __init__(self, path: str, commands: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.path = path
        self.server: asyncio.AbstractServer | None = None
        self.commands = commands

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.server = await asyncio.start_unix_server(self._client, self.path)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(await self.handle(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            args = req.get("args", {})
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'request: expected JSON {"cmd": ..., "args": {...}}'}
        fn = self.commands.get(cmd)
        if fn is None:
            return {
                "ok": False,
                "error": f"cmd: unknown command {cmd!r} ({', '.join(self.commands)})",
            }
        try:
            result = fn(args)
            if inspect.isawaitable(result):
                result = await result
            return {"ok": True, "result": result}
        except self.errors as e:
            return {"ok": False, "error": str(e)}


class ControlServer(JsonLineServer):
    errors = (SwitchError, PortConfigError, FlowSyntaxError, FieldError, KeyError, BfdConfigError)

    def __init__(
        self,
        runner: Runner,
        path: str,
        port_security: bool = True,
        info: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.runner = runner
        self.port_security = port_security
        self.info = info
        super().__init__(
            path,
            {
                "show": self.show,
                "add-port": self.add_port,
                "del-port": self.del_port,
                "trace": self.trace,
                "fdb": self.fdb,
                "ct-dump": self.ct_dump,
                "ct-flush": self.ct_flush,
                "ct-stats": self.ct_stats,
                "ct-ipf": self.ct_ipf,
                "bfd-add": self.bfd_add,
                "bfd-del": self.bfd_del,
                "bfd-show": self.bfd_show,
            },
        )

    # -- commands -----------------------------------------------------------------------------
    def show(self, args: dict[str, Any]) -> Any:
        sw = self.runner.switch
        ports = []
        for no, p in sorted(sw.ports.items()):
            ports.append(
                {
                    "ofport": no,
                    "name": p.name,
                    "hw_addr": mac_str(p.device.hw_addr),
                    "link": "up" if p.link_up else "down",
                    "admin": "up" if p.admin_up else "down",
                    "vnet_hdr": p.device.vnet_hdr,
                    "locked_mac": mac_str(p.locked_mac) if p.locked_mac is not None else None,
                    "config": p.config.as_dict(),
                    "stats": p.stats.as_dict(),
                    "drops": p.drops,
                }
            )
        extra = self.info() if self.info is not None else {}
        return {
            **sw.stats(),
            **extra,
            "port_security": "on" if self.port_security else "off",
            "ports": ports,
        }

    def add_port(self, args: dict[str, Any]) -> Any:
        cfg = parse_port_spec(
            args["spec"], kind=args.get("kind", "netdev"), port_security=self.port_security
        )
        p = self.runner.add_port(cfg)
        return {"ofport": p.port_no, "name": p.name}

    def del_port(self, args: dict[str, Any]) -> Any:
        p = self.runner.del_port(args["name"])
        return {"ofport": p.port_no, "name": p.name}

    def trace(self, args: dict[str, Any]) -> Any:
        key = parse_packet(args["packet"])
        tracer = self.runner.switch.trace(key, int(args.get("table", 0)))
        return {"text": tracer.format(), "trace": tracer.as_dict()}

    def _zone(self, args: dict[str, Any]) -> int | None:
        zone = args.get("zone")
        if zone is not None and (not isinstance(zone, int) or not 0 <= zone <= 0xFFFF):
            raise SwitchError(f"zone: expected 0..65535, got {zone!r}")
        return zone

    def ct_dump(self, args: dict[str, Any]) -> Any:
        sw = self.runner.switch
        zone = self._zone(args)
        lines = [format_conn(c, sw.now) for c in sw.conntrack.conns(zone)]
        return sorted(lines)

    def ct_flush(self, args: dict[str, Any]) -> Any:
        """Every connection (of a zone), or those whose original tuple matches `tuple`."""
        zone = self._zone(args)
        text = args.get("tuple")
        where = orig_tuple(text) if text is not None else None
        return {"flushed": self.runner.switch.conntrack.flush(zone, where)}

    def ct_stats(self, args: dict[str, Any]) -> Any:
        sw = self.runner.switch
        return {**sw.conntrack.stats(sw.now), "ipf": sw.ipf.stats()}

    def ct_ipf(self, args: dict[str, Any]) -> Any:
        """Fragment reassembly: settings changed as given (Open vSwitch's
        dpctl/ipf-set-enabled, -min-frag, -max-nfrags; all checked before any is
        made), then its status and lists (dpctl/ipf-get-status -m)."""
        ipf = self.runner.switch.ipf
        enable = _versions(
            args.get("enable"), "enable", lambda v: isinstance(v, bool), "true or false"
        )
        lo, hi = MIN_FRAG_BOUND, 65535
        min_frag = _versions(
            args.get("min_frag"),
            "min_frag",
            lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
            f"{lo}..{hi}",
        )
        max_frags = args.get("max_frags")
        if max_frags is not None and (
            not isinstance(max_frags, int)
            or isinstance(max_frags, bool)
            or not 0 <= max_frags <= MAX_FRAGS_BOUND
        ):
            raise SwitchError(f"max_frags: expected 0..{MAX_FRAGS_BOUND}, got {max_frags!r}")
        for v, on in enable.items():
            ipf.enabled[v] = on
        for v, size in min_frag.items():
            ipf.set_min_frag(v, size)
        if max_frags is not None:
            ipf.set_max_frags(max_frags)
        return {**ipf.stats(), "dump": ipf.dump()}

    def _bfd_peer(self, args: dict[str, Any]) -> tuple[Any, int]:
        sw = self.runner.switch
        name = args.get("port")
        port = sw.port_by_name(name) if isinstance(name, str) else None
        if port is None:
            raise SwitchError(f"port: no port {name!r} on {sw.name}")
        try:
            peer = ip4_int(args["peer"])
        except (ValueError, TypeError, AttributeError, OSError):
            raise SwitchError(f"peer: expected an IPv4 address, got {args['peer']!r}") from None
        return port, peer

    def bfd_add(self, args: dict[str, Any]) -> Any:
        """A BFD session to `peer` (underlay address) over tunnel `port` (timers in ms,
        as Open vSwitch's bfd:min_tx/min_rx/mult; default 100, 100, 3); an existing
        session gets the new timers."""
        port, peer = self._bfd_peer(args)
        timers = {}
        for key, name in (("min_tx", "desired_min_tx"), ("min_rx", "required_min_rx")):
            ms = args.get(key, 100)
            if isinstance(ms, bool) or not isinstance(ms, int) or not 1 <= ms <= 4_294_967:
                raise SwitchError(f"{key}: expected 1..4294967 (ms), got {ms!r}")
            timers[name] = ms * 1000
        sw = self.runner.switch
        s = sw.bfd.add(port, peer, self.runner.clock(), detect_mult=args.get("mult", 3), **timers)
        return {"port": port.name, "peer": args["peer"], "local_disc": s.local_disc}

    def bfd_del(self, args: dict[str, Any]) -> Any:
        port, peer = self._bfd_peer(args)
        self.runner.switch.bfd.remove(port.name, peer)
        return {"port": port.name, "peer": args["peer"]}

    def bfd_show(self, args: dict[str, Any]) -> Any:
        sw = self.runner.switch
        mon, pl = sw.bfd, sw.pipeline
        marked = sum(r.flow.cookie in pl.stand_down for t in pl.tables for r in t.by_id.values())
        return {
            "sessions": mon.show(),
            "drops": dict(sorted(mon.drops.items())),
            "isolated": mon.isolated,
            "stand_down": {"flows": marked, "standing_down": len(pl.asleep)},
        }

    def fdb(self, args: dict[str, Any]) -> Any:
        sw = self.runner.switch
        return [
            {"port": p, "vlan": v, "mac": mac_str(m), "age": round(a, 1)}
            for p, v, m, a in sw.macs.dump(sw.now)
        ]


# Open vSwitch's ct-orig-tuple fields (dpctl/flush-conntrack): name -> (index in a
# tracker tuple, IP version it implies, parser); ICMP's id and type are the tuple's ports
_TUPLE_FIELDS: dict[str, tuple[int | None, int | None, Callable[[str], int]]] = {
    "ct_nw_src": (3, 4, ip4_int),
    "ct_nw_dst": (4, 4, ip4_int),
    "ct_ipv6_src": (3, 6, ip6_int),
    "ct_ipv6_dst": (4, 6, ip6_int),
    "ct_nw_proto": (2, None, int),
    "ct_tp_src": (5, None, int),
    "ct_tp_dst": (6, None, int),
    "icmp_id": (5, None, int),
    "icmp_type": (6, None, int),
    "icmp_code": (None, None, int),  # the tracker keys ICMP by id and type only
}
_TUPLE_MAX = {2: 255, 5: 65535, 6: 65535}


def orig_tuple(text: Any) -> Callable[[Conn], bool]:
    """Which connections an original-direction tuple in Open vSwitch's syntax
    (`ct_nw_src=10.0.0.1,ct_nw_dst=10.0.0.2,ct_nw_proto=6,ct_tp_src=40000,ct_tp_dst=80`)
    names: those whose fields equal every field given.  SwitchError names a bad field."""
    if not isinstance(text, str) or not text.strip():
        raise SwitchError(f"tuple: expected FIELD=VALUE[,...], got {text!r}")
    want: dict[int, int] = {}
    version = None
    for item in text.split(","):
        name, eq, value = item.strip().partition("=")
        spec = _TUPLE_FIELDS.get(name)
        if spec is None or not eq:
            known = ", ".join(_TUPLE_FIELDS)
            raise SwitchError(f"tuple: unknown field {item.strip()!r} (one of {known})")
        index, v, parse = spec
        try:
            n = parse(value.strip())
        except ValueError:
            raise SwitchError(f"tuple: {name}: bad value {value!r}") from None
        if index is not None and (n < 0 or n > _TUPLE_MAX.get(index, n)):
            raise SwitchError(f"tuple: {name}: {n} is out of range")
        if v is not None:
            if version is not None and v != version:
                raise SwitchError(f"tuple: {name}: IPv4 and IPv6 fields mixed")
            version = v
        if index is not None:
            want[index] = n
    if version is not None:
        want[1] = version
    items = tuple(want.items())
    return lambda conn: all(conn.orig[i] == n for i, n in items)


def _versions(given: Any, name: str, ok: Callable[[Any], bool], expected: str) -> dict[int, Any]:
    """{"v4": x, "v6": y} -> {4: x, 6: y}, every key and value checked."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise SwitchError(f'{name}: expected {{"v4"|"v6": {expected}}}, got {given!r}')
    out = {}
    for k, v in given.items():
        if k not in ("v4", "v6"):
            raise SwitchError(f"{name}: expected v4 or v6, got {k!r}")
        if not ok(v):
            raise SwitchError(f"{name}.{k}: expected {expected}, got {v!r}")
        out[int(k[1])] = v
    return out


def request(path: str, cmd: str, **args: Any) -> Any:
    """One request to a control socket (blocking; for the CLI); refusals raise SwitchError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise SwitchError(reply.get("error", "unknown error"))
    return reply["result"]
