"""The switch's OpenFlow 1.3 agent: controller connections and message handling.

asyncio, one task per connection.  Connections are made to controllers
(`tcp:HOST:PORT`, reconnecting with exponential back-off up to 8 s, as Open
vSwitch does) and accepted from a passive listener (`ptcp:PORT[:IP]`) and the
switch's management socket (`punix:PATH`), which is what `vnet ofctl`
talks to.  Only active controller connections count for the fail mode.

Every connection starts with HELLO and version negotiation: OpenFlow 1.3 only;
a peer that cannot speak it gets HELLO_FAILED/INCOMPATIBLE and is closed.

Liveness is Open vSwitch's inactivity probe: anything the peer sends is a
sign of life -- counted when its bytes arrive (`_Reader.feed_data`), not when
the switch gets round to reading them, so a switch busy forwarding, or
waiting for a slow controller to take its packet-ins, does not mistake a
live controller for a dead one.  After `probe` seconds of silence the switch
sends ECHO_REQUEST; if nothing at all arrives within `probe` seconds of that
request, it disconnects.  Both waits are measured from the clock when the
task wakes, so a loop that was held up late sends its request late rather
than giving up on a peer it never asked.  The write buffer may grow to
`WRITE_HIGH_WATER` before reading waits for it (packet-ins beyond it are
dropped and counted, not queued).  Connects, disconnects and the last
disconnect's reason are kept for `vnet switch show` (`status`).

Messages are decoded with os-ken and converted to vnet types at the edge
(`convert`); replies are packed by `encode`.  A request that cannot be
decoded or honoured gets an ERROR with the right type and code and the
offending bytes, and the connection stays up.  Roles follow OpenFlow 1.3
§6.3.7: a slave may read but not write, and gets no PACKET_IN.

vnet's own experimenter messages (`vnetext`) carry BFD: a controller's
BFD_CONFIG sets the sessions the switch runs for it (`bfd_config`) and is
answered with every session's state; each change `Monitor.on_change` sees
goes to the controllers as a BFD_STATUS (`bfd_changed`); a STAND_DOWN sets
the cookies of the flows that match nothing while the switch is isolated
(`Switch.set_stand_down`).  Another experimenter is refused as before
(BAD_EXPERIMENTER).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections.abc import Iterable
from typing import Any, SupportsIndex

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from .. import __version__
from ..datapath.meters import Band, MeterConfig, MeterError
from ..datapath.port import Port
from ..datapath.switch import PacketIn, Switch
from ..model.objects import tunnel_iface
from ..packet import flowkey as fk
from ..pipeline.errors import PipelineError
from ..pipeline.flow import Flow, FlowMod, FlowModCommand, Rule
from ..pipeline.groups import GroupDesc, GroupMod, GroupModCommand, GroupType
from ..pipeline.match import Match
from . import encode as enc
from . import vnetext
from .convert import (
    GROUP_TYPES_TO_OFP,
    OFError,
    actions_from_ofp,
    bucket_to_ofp,
    check_flow,
    flow_from_ofp,
    group_from_ofp,
    instructions_to_ofp,
    match_from_ofp,
    match_to_ofp,
)
from .decode import DecodeError, decode_request
from .target import parse_target

__all__ = ["Agent", "parse_target"]

log = logging.getLogger("vnet.ofp")
_HDR = struct.Struct("!BBHI")


_ERR_TYPES = {
    "hello_failed": (ofp.OFPET_HELLO_FAILED, "OFPHFC_"),
    "bad_request": (ofp.OFPET_BAD_REQUEST, "OFPBRC_"),
    "bad_action": (ofp.OFPET_BAD_ACTION, "OFPBAC_"),
    "bad_instruction": (ofp.OFPET_BAD_INSTRUCTION, "OFPBIC_"),
    "bad_match": (ofp.OFPET_BAD_MATCH, "OFPBMC_"),
    "flow_mod_failed": (ofp.OFPET_FLOW_MOD_FAILED, "OFPFMFC_"),
    "group_mod_failed": (ofp.OFPET_GROUP_MOD_FAILED, "OFPGMFC_"),
    "meter_mod_failed": (ofp.OFPET_METER_MOD_FAILED, "OFPMMFC_"),
}
_FLOW_CMDS = {
    ofp.OFPFC_ADD: FlowModCommand.ADD,
    ofp.OFPFC_MODIFY: FlowModCommand.MODIFY,
    ofp.OFPFC_MODIFY_STRICT: FlowModCommand.MODIFY_STRICT,
    ofp.OFPFC_DELETE: FlowModCommand.DELETE,
    ofp.OFPFC_DELETE_STRICT: FlowModCommand.DELETE_STRICT,
}
_GROUP_CMDS = {
    ofp.OFPGC_ADD: GroupModCommand.ADD,
    ofp.OFPGC_MODIFY: GroupModCommand.MODIFY,
    ofp.OFPGC_DELETE: GroupModCommand.DELETE,
}
_METER_CMDS = {ofp.OFPMC_ADD: "add", ofp.OFPMC_MODIFY: "modify", ofp.OFPMC_DELETE: "delete"}
_PI_REASONS = {
    "no_match": ofp.OFPR_NO_MATCH,
    "action": ofp.OFPR_ACTION,
    "invalid_ttl": ofp.OFPR_INVALID_TTL,
}
_FR_REASONS = {"idle_timeout": ofp.OFPRR_IDLE_TIMEOUT, "hard_timeout": ofp.OFPRR_HARD_TIMEOUT}
_WRITES = frozenset(
    (
        ofp.OFPT_FLOW_MOD,
        ofp.OFPT_GROUP_MOD,
        ofp.OFPT_METER_MOD,
        ofp.OFPT_PACKET_OUT,
        ofp.OFPT_PORT_MOD,
        ofp.OFPT_TABLE_MOD,
    )
)
OFPP_ANY = ofp.OFPP_ANY
OFPG_ANY = ofp.OFPG_ANY
MAX_BACKOFF = 8.0
WRITE_HIGH_WATER = 4 << 20


def _pipeline_error(e: PipelineError) -> tuple[int, int]:
    tname, cname = e.kind.value
    t, prefix = _ERR_TYPES[tname]
    return t, getattr(ofp, prefix + cname.upper())


class _Reader(asyncio.StreamReader):
    """A stream reader that notes when bytes last arrived from the peer."""

    last_data = 0.0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.last_data = time.monotonic()
        super().feed_data(data)


def _streams(loop: asyncio.AbstractEventLoop) -> tuple[_Reader, asyncio.StreamReaderProtocol]:
    reader = _Reader(loop=loop)
    return reader, asyncio.StreamReaderProtocol(reader, loop=loop)


async def _open(kind: str, host: str, port: int) -> tuple[_Reader, asyncio.StreamWriter]:
    """asyncio.open_connection / open_unix_connection, with a `_Reader`."""
    loop = asyncio.get_running_loop()
    reader, protocol = _streams(loop)
    if kind == "tcp":
        transport, _ = await loop.create_connection(lambda: protocol, host, port)
    else:
        transport, _ = await loop.create_unix_connection(lambda: protocol, host)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class Connection:
    def __init__(
        self,
        agent: Agent,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        active: bool,
        name: str,
    ) -> None:
        self.agent = agent
        self.reader = reader
        self.writer = writer
        self.active = active
        self.name = name
        self.role = ofp.OFPCR_ROLE_EQUAL
        self.ready = False
        self.connected_at = self.last_rx = time.monotonic()
        self.miss_send_len = 128
        self.config_flags = 0
        self.close_reason = "closed by the peer"
        t = writer.transport
        if t is not None:
            t.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def heard(self) -> float:
        """When the peer was last heard from: a message read, or bytes arrived."""
        return max(self.last_rx, getattr(self.reader, "last_data", 0.0))

    def close(self, reason: str, abort: bool = False) -> None:
        """Close, after what is queued has been sent -- or at once (`abort`): a peer
        that is gone would otherwise hold a full write buffer, and the connection
        with it, forever."""
        self.close_reason = reason
        t = self.writer.transport
        if abort and t is not None:
            t.abort()
        else:
            self.writer.close()

    # -- sending --------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def congested(self) -> bool:
        t = self.writer.transport
        return t is None or t.get_write_buffer_size() > WRITE_HIGH_WATER

    def error(self, xid: int, type_: int, code: int, data: bytes) -> None:
        self.send(enc.pack_error(xid, type_, code, data[:64]))

    # -- receiving ------------------------------------------------------------------------
    async def run(self) -> None:
        self.send(enc.pack_hello())
        prober = asyncio.create_task(self._probe())
        try:
            while True:
                head = await self.reader.readexactly(8)
                version, mtype, length, xid = _HDR.unpack(head)
                if length < 8:
                    self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, head)
                    self.close_reason = "bad message length: framing lost"
                    return  # framing is lost: nothing after this can be trusted
                body = await self.reader.readexactly(length - 8)
                self.last_rx = time.monotonic()
                self.handle(head + body, version, mtype, xid)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            if not isinstance(e, asyncio.IncompleteReadError) and not self.writer.is_closing():
                self.close_reason = f"connection error: {e}"
        finally:
            prober.cancel()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _probe(self) -> None:
        probe = self.agent.probe
        while True:
            wait = self.heard() + probe - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            asked = time.monotonic()
            self.send(enc.message(ofp.OFPT_ECHO_REQUEST, 0))
            await asyncio.sleep(probe)
            if self.heard() >= asked:
                continue  # any message (or bytes of one) since the request: alive
            idle = time.monotonic() - self.heard()
            reason = f"nothing received for {idle:.1f} s, echo request unanswered"
            log.warning("%s: %s: disconnecting", self.name, reason)
            self.close(reason, abort=True)
            return

    def handle(self, raw: bytes, version: int, mtype: int, xid: int) -> None:
        if mtype == ofp.OFPT_HELLO:
            self._hello(raw, version, xid)
            return
        if not self.ready:
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, raw)
            return
        if version != ofp.OFP_VERSION:
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION, raw)
            return
        if mtype == ofp.OFPT_ECHO_REQUEST:
            self.send(enc.message(ofp.OFPT_ECHO_REPLY, xid, raw[8:]))
            return
        if mtype in (ofp.OFPT_ECHO_REPLY, ofp.OFPT_ERROR):
            if mtype == ofp.OFPT_ERROR:
                log.info("%s: controller sent an error: %s", self.name, raw[8:12].hex())
            return
        if mtype == ofp.OFPT_BARRIER_REQUEST:
            self.send(enc.message(ofp.OFPT_BARRIER_REPLY, xid))
            return
        if mtype == ofp.OFPT_EXPERIMENTER:
            ours = vnetext.split(raw)
            if ours is not None and ours[:2] == (vnetext.VNET_EXPERIMENTER, vnetext.BFD_CONFIG):
                if self.role == ofp.OFPCR_ROLE_SLAVE:
                    self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, raw)
                    return
                try:
                    self.agent.bfd_config(self, vnetext.decode_config(ours[2]), xid)
                except ValueError as e:  # a bad record, or a session the switch cannot run
                    log.info("%s: bfd config refused: %s", self.name, e)
                    self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, raw)
                return
            if ours is not None and ours[:2] == (vnetext.VNET_EXPERIMENTER, vnetext.STAND_DOWN):
                if self.role == ofp.OFPCR_ROLE_SLAVE:
                    self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, raw)
                    return
                try:
                    cookies = vnetext.decode_stand_down(ours[2])
                except ValueError as e:  # a partial cookie, or one naming no flow of its own
                    log.info("%s: stand down refused: %s", self.name, e)
                    self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, raw)
                    return
                self.agent.switch.set_stand_down(cookies)
                return
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER, raw)
            return
        if mtype in _WRITES and self.role == ofp.OFPCR_ROLE_SLAVE:
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, raw)
            return
        try:
            msg = decode_request(mtype, raw)
        except DecodeError as e:
            log.info("%s: %s", self.name, e)
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, raw)
            return
        if msg is None:
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, raw)
            return
        try:
            self.agent.dispatch(self, mtype, msg, xid)
        except OFError as e:
            log.info("%s: refused: %s", self.name, e)
            ext = b"" if e.experimenter is None else struct.pack("!I", e.experimenter)
            self.error(xid, e.type, e.code, ext + raw)
        except PipelineError as e:
            log.info("%s: refused: %s", self.name, e)
            self.error(xid, *_pipeline_error(e), raw)
        except MeterError as e:
            log.info("%s: refused: %s", self.name, e)
            self.error(
                xid, ofp.OFPET_METER_MOD_FAILED, getattr(ofp, "OFPMMFC_" + e.kind.upper()), raw
            )
        except Exception:
            log.exception("%s: cannot handle message type %d", self.name, mtype)
            self.error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_EPERM, raw)

    def _hello(self, raw: bytes, version: int, xid: int) -> None:
        ok = version == ofp.OFP_VERSION
        if version > ofp.OFP_VERSION or len(raw) > 8:
            # a version bitmap may offer 1.3 even when the header says otherwise
            off = 8
            while off + 4 <= len(raw):
                etype, elen = struct.unpack_from("!HH", raw, off)
                if elen < 4:
                    break
                if etype == ofp.OFPHET_VERSIONBITMAP and elen >= 8:
                    bitmap = int.from_bytes(raw[off + 4 : off + 8], "big")
                    ok = bool(bitmap & (1 << ofp.OFP_VERSION))
                off += (elen + 7) & ~7
        if not ok:
            msg = f"vnet speaks OpenFlow 1.3 (0x04) only; peer offered 0x{version:02x}".encode()
            self.send(
                enc.message(
                    ofp.OFPT_ERROR,
                    xid,
                    struct.pack("!HH", ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE) + msg,
                )
            )
            self.close("version negotiation failed (HELLO_FAILED sent)")
            return
        if not self.ready:
            self.ready = True
            self.agent.connected(self)


class Agent:
    def __init__(
        self,
        switch: Switch,
        controllers: Iterable[str] = (),
        listeners: Iterable[str] = (),
        probe: float = 5.0,
    ) -> None:
        self.switch = switch
        self.controllers = [parse_target(t) for t in controllers]
        self.listeners = [parse_target(t) for t in listeners]
        for kind, _, _ in self.controllers:
            if kind not in ("tcp", "unix"):
                raise ValueError("controllers are tcp:HOST:PORT or unix:PATH")
        for kind, _, _ in self.listeners:
            if kind not in ("ptcp", "punix"):
                raise ValueError("listeners are ptcp:PORT[:IP] or punix:PATH")
        self.probe = probe
        self.connections: list[Connection] = []
        self.generation: int | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.started = time.monotonic()
        self.packet_ins = 0
        # connection flaps, for `vnet switch show`
        self.connects = 0
        self.disconnects = 0
        self.last_disconnect: dict[str, Any] | None = None
        switch.set_controllers(len(self.controllers))
        switch.on_packet_in = self.packet_in
        switch.on_port_status = self.port_status
        switch.bfd.on_change = self.bfd_changed
        self.bfd_managed: set[tuple[str, int]] = set()  # sessions a BFD_CONFIG asked for

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for kind, host, port in self.listeners:
            if kind == "ptcp":
                srv = await loop.create_server(self._protocol, host, port)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(host)
                srv = await loop.create_unix_server(self._protocol, host)
            self.servers.append(srv)
        for target in self.controllers:
            self.tasks.append(asyncio.create_task(self._active(target)))

    def bound_ports(self) -> list[int]:
        out = []
        for srv in self.servers:
            for s in getattr(srv, "sockets", ()):
                name = s.getsockname()
                if isinstance(name, tuple):
                    out.append(name[1])
        return out

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for srv in self.servers:
            srv.close()
        for c in list(self.connections):
            c.close("switch stopping")
        for kind, host, _ in self.listeners:
            if kind == "punix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(host)

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        """asyncio.start_server's protocol factory, with a `_Reader`."""
        reader = _Reader(loop=asyncio.get_running_loop())
        return asyncio.StreamReaderProtocol(reader, self._accept)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or "unix"
        conn = Connection(self, reader, writer, active=False, name=f"passive {peer}")
        with contextlib.suppress(asyncio.CancelledError):  # stop(): not an error to report
            await self._serve(conn)

    async def _active(self, target: tuple[str, str, int]) -> None:
        kind, host, port = target
        backoff = 1.0
        while True:
            try:
                reader, writer = await _open(kind, host, port)
            except OSError:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            name = f"{kind}:{host}:{port}" if kind == "tcp" else f"unix:{host}"
            log.info("connected to controller %s", name)
            await self._serve(Connection(self, reader, writer, active=True, name=name))
            log.info("controller %s disconnected", name)
            await asyncio.sleep(backoff)

    async def _serve(self, conn: Connection) -> None:
        try:
            await conn.run()
        except asyncio.CancelledError:
            conn.close_reason = "switch stopping"
            raise
        finally:
            if conn in self.connections:
                self.connections.remove(conn)
                if conn.active:
                    self.switch.controller_connected(-1)
                    self.disconnects += 1
                    self.last_disconnect = {
                        "controller": conn.name,
                        "reason": conn.close_reason,
                        "at": time.time(),
                        "after": round(time.monotonic() - conn.connected_at, 1),
                    }

    def connected(self, conn: Connection) -> None:
        self.connections.append(conn)
        if conn.active:
            self.switch.controller_connected(+1)
            self.connects += 1

    def status(self) -> dict[str, Any]:
        """Controller connections and their flaps, for `vnet switch show`."""
        now = time.monotonic()
        roles = {
            ofp.OFPCR_ROLE_EQUAL: "equal",
            ofp.OFPCR_ROLE_MASTER: "master",
            ofp.OFPCR_ROLE_SLAVE: "slave",
        }
        return {
            "openflow": {
                "probe_interval": self.probe,
                "connects": self.connects,
                "disconnects": self.disconnects,
                "last_disconnect": self.last_disconnect,
                "connections": [
                    {
                        "name": c.name,
                        "active": c.active,
                        "role": roles.get(c.role, str(c.role)),
                        "up_for": round(now - c.connected_at, 1),
                        "last_heard": round(now - c.heard(), 1),
                    }
                    for c in self.connections
                ],
            }
        }

    # -- events from the switch -------------------------------------------------------------
    def _receivers(self) -> list[Connection]:
        return [c for c in self.connections if c.role != ofp.OFPCR_ROLE_SLAVE]

    def packet_in(self, pi: PacketIn) -> None:
        data = pi.frame if pi.max_len >= 0xFFFF else pi.frame[: pi.max_len]
        msg = None
        for c in self._receivers():
            if not c.active and pi.reason == "no_match":
                continue
            if c.congested():
                self.switch.drop("controller_congested")
                continue
            if msg is None:
                msg = enc.pack_packet_in(
                    _PI_REASONS.get(pi.reason, ofp.OFPR_ACTION),
                    pi.table_id,
                    pi.cookie,
                    _packet_in_match(pi.key),
                    data,
                    pi.total_len,
                )
            c.send(msg)
            self.packet_ins += 1
        if msg is None:
            self.switch.drop("no_controller")

    def port_status(self, what: str, port: Port) -> None:
        reason = {"add": ofp.OFPPR_ADD, "delete": ofp.OFPPR_DELETE}.get(what, ofp.OFPPR_MODIFY)
        msg = enc.pack_port_status(reason, _port_desc(port))
        for c in self.connections:
            c.send(msg)

    def bfd_changed(self, port: str, peer: int, session: Any) -> None:
        msg = vnetext.encode_status({peer: session.state.label}, full=False)
        for c in self._receivers():
            c.send(msg)

    def bfd_config(self, conn: Connection, wants: list[vnetext.BfdWant], xid: int) -> None:
        """Run the sessions `wants` names (and no other a BFD_CONFIG asked for); answer
        with every session's state."""
        sw, now = self.switch, time.monotonic()
        todo = []
        for w in wants:
            port = sw.port_by_name(tunnel_iface(w.encap))
            if port is None:
                raise ValueError(f"bfd config: no {w.encap} tunnel port")
            todo.append((port, w))
        keep = {(port.name, w.peer) for port, w in todo}
        for key in sorted(self.bfd_managed - keep):
            if key in sw.bfd.peers:
                sw.bfd.remove(*key)
        for port, w in todo:
            sw.bfd.add(port, w.peer, now, desired_min_tx=w.min_tx * 1000,
                       required_min_rx=w.min_rx * 1000, detect_mult=w.mult)  # fmt: skip
        self.bfd_managed = keep
        states = {ip: p.session.state.label for (_, ip), p in sw.bfd.peers.items()}
        conn.send(vnetext.encode_status(states, full=True, xid=xid))

    def flows_removed(self, removed: Iterable[tuple[Rule, str | int]]) -> None:
        now = self.switch.now
        for rule, reason in removed:
            fl = rule.flow
            if not fl.flags & ofp.OFPFF_SEND_FLOW_REM:
                continue
            code = reason if isinstance(reason, int) else _FR_REASONS.get(reason, ofp.OFPRR_DELETE)
            msg = enc.pack_flow_removed(
                fl.cookie,
                fl.priority,
                code,
                fl.table,
                now - rule.created,
                fl.idle_timeout,
                fl.hard_timeout,
                rule.packet_count,
                rule.byte_count,
                match_to_ofp(fl.match),
            )
            for c in self._receivers():
                c.send(msg)

    # -- requests ---------------------------------------------------------------------------
    def dispatch(self, conn: Connection, mtype: int, msg: Any, xid: int) -> None:
        sw = self.switch
        sw.now = time.monotonic()
        if mtype == ofp.OFPT_FEATURES_REQUEST:
            conn.send(enc.pack_features(xid, sw.dpid, len(sw.pipeline.tables)))
        elif mtype == ofp.OFPT_GET_CONFIG_REQUEST:
            conn.send(enc.pack_config(xid, conn.config_flags, conn.miss_send_len))
        elif mtype == ofp.OFPT_SET_CONFIG:
            conn.config_flags, conn.miss_send_len = msg.flags, msg.miss_send_len
        elif mtype == ofp.OFPT_FLOW_MOD:
            self._flow_mod(msg)
        elif mtype == ofp.OFPT_GROUP_MOD:
            self._group_mod(msg)
        elif mtype == ofp.OFPT_METER_MOD:
            self._meter_mod(msg)
        elif mtype == ofp.OFPT_PACKET_OUT:
            self._packet_out(msg)
        elif mtype == ofp.OFPT_PORT_MOD:
            self._port_mod(msg)
        elif mtype == ofp.OFPT_TABLE_MOD:
            pass  # OpenFlow 1.3 leaves table config deprecated; nothing to do
        elif mtype == ofp.OFPT_MULTIPART_REQUEST:
            for m in self._multipart(msg, xid):
                conn.send(m)
        elif mtype == ofp.OFPT_ROLE_REQUEST:
            self._role(conn, msg, xid)
        elif mtype == ofp.OFPT_GET_ASYNC_REQUEST:
            body = struct.pack("!IIIIII", 0b111, 0b111, 0b111, 0b111, 0b1111, 0b1111)
            conn.send(enc.message(ofp.OFPT_GET_ASYNC_REPLY, xid, body))
        elif mtype == ofp.OFPT_SET_ASYNC:
            pass
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, f"message type {mtype}")

    def _flow_mod(self, msg: Any) -> None:
        cmd = _FLOW_CMDS.get(msg.command)
        if cmd is None:
            raise OFError(
                ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND, f"command {msg.command}"
            )
        if msg.buffer_id != ofp.OFP_NO_BUFFER:
            raise OFError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, "this switch buffers no packets"
            )
        deleting = cmd in (FlowModCommand.DELETE, FlowModCommand.DELETE_STRICT)
        if deleting:
            flow = Flow(
                match=match_from_ofp(msg.match),
                table=msg.table_id,
                priority=msg.priority,
                cookie=msg.cookie,
            )
        else:
            flow = flow_from_ofp(msg)
            check_flow(flow, msg)
        mod = FlowMod(
            cmd,
            flow,
            cookie_mask=msg.cookie_mask,
            out_port=msg.out_port if deleting else OFPP_ANY,
            out_group=msg.out_group if deleting else OFPG_ANY,
            reset_counts=bool(msg.flags & ofp.OFPFF_RESET_COUNTS),
        )
        removed = self.switch.commit([mod])
        if deleting and removed:
            self.flows_removed((r, ofp.OFPRR_DELETE) for r in removed)

    def _group_mod(self, msg: Any) -> None:
        cmd = _GROUP_CMDS.get(msg.command)
        if cmd is None:
            raise OFError(
                ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_COMMAND, f"command {msg.command}"
            )
        if cmd == GroupModCommand.DELETE:
            desc = GroupDesc(msg.group_id, GroupType.ALL)
        else:
            desc = group_from_ofp(msg.group_id, msg.type, msg.buckets)
        removed = self.switch.commit([GroupMod(cmd, desc)])
        if removed:
            self.flows_removed((r, ofp.OFPRR_GROUP_DELETE) for r in removed)

    def _meter_mod(self, msg: Any) -> None:
        cmd = _METER_CMDS.get(msg.command)
        if cmd is None:
            raise OFError(
                ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_COMMAND, f"command {msg.command}"
            )
        if cmd == "delete" and msg.meter_id == ofp.OFPM_ALL:
            self.switch.meters.meters.clear()
            return
        bands = tuple(Band(b.rate, b.burst_size, b.type) for b in msg.bands)
        self.switch.meter_mod(MeterConfig(msg.meter_id, msg.flags, bands), cmd)

    def _packet_out(self, msg: Any) -> None:
        if msg.buffer_id != ofp.OFP_NO_BUFFER:
            raise OFError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, "this switch buffers no packets"
            )
        actions = actions_from_ofp(msg.actions)
        data = bytes(msg.data or b"")
        if len(data) < 14:
            raise OFError(
                ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PACKET, "packet-out without a frame"
            )
        in_port = msg.in_port
        if in_port not in self.switch.ports and in_port not in (
            ofp.OFPP_CONTROLLER,
            ofp.OFPP_LOCAL,
            ofp.OFPP_ANY,
        ):
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT, f"in_port {in_port}")
        self.switch.packet_out(in_port, actions, data)

    def _port_mod(self, msg: Any) -> None:
        port = self.switch.ports.get(msg.port_no)
        if port is None:
            raise OFError(ofp.OFPET_PORT_MOD_FAILED, ofp.OFPPMFC_BAD_PORT, f"port {msg.port_no}")
        if msg.mask & ofp.OFPPC_PORT_DOWN:
            self.switch.set_admin(port, not msg.config & ofp.OFPPC_PORT_DOWN)

    def _role(self, conn: Connection, msg: Any, xid: int) -> None:
        role = msg.role
        if role in (ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE):
            gen = msg.generation_id
            if self.generation is not None and ((gen - self.generation) & (1 << 63)):
                raise OFError(
                    ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, "stale generation id"
                )
            self.generation = gen
        if role == ofp.OFPCR_ROLE_MASTER:
            for c in self.connections:
                if c is not conn and c.role == ofp.OFPCR_ROLE_MASTER:
                    c.role = ofp.OFPCR_ROLE_SLAVE
        if role != ofp.OFPCR_ROLE_NOCHANGE:
            if role not in (ofp.OFPCR_ROLE_EQUAL, ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE):
                raise OFError(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_BAD_ROLE, f"role {role}")
            conn.role = role
        conn.send(enc.pack_role(xid, conn.role, self.generation or 0))

    # -- multipart --------------------------------------------------------------------------
    def _multipart(self, msg: Any, xid: int) -> list[bytes]:
        sw = self.switch
        t = msg.type
        now = sw.now if sw.now else time.monotonic()
        items: list[bytes]
        if t == ofp.OFPMP_DESC:
            items = [
                struct.pack(
                    "!256s256s256s32s256s",
                    b"vnet",
                    b"vnet userspace switch",
                    f"vnet {__version__}".encode(),
                    b"None",
                    sw.name.encode(),
                )
            ]
        elif t in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
            sel = FlowMod(
                FlowModCommand.DELETE,
                Flow(match=match_from_ofp(msg.match), table=msg.table_id, cookie=msg.cookie),
                cookie_mask=msg.cookie_mask,
                out_port=msg.out_port,
                out_group=msg.out_group,
            )
            if msg.table_id != ofp.OFPTT_ALL and msg.table_id >= len(sw.pipeline.tables):
                raise OFError(
                    ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID, f"table {msg.table_id}"
                )
            rules = sorted(sw.pipeline.select(sel), key=lambda r: (r.flow.table, -r.priority))
            if t == ofp.OFPMP_AGGREGATE:
                items = [
                    struct.pack(
                        "!QQI4x",
                        sum(r.packet_count for r in rules),
                        sum(r.byte_count for r in rules),
                        len(rules),
                    )
                ]
            else:
                items = [_flow_stats(r, now) for r in rules]
        elif t == ofp.OFPMP_TABLE:
            items = [
                struct.pack("!B3xIQQ", tb.table_id, len(tb.by_id), tb.lookups, tb.matches)
                for tb in sw.pipeline.tables
            ]
        elif t == ofp.OFPMP_PORT_STATS:
            items = [
                _port_stats(p, now)
                for no, p in sorted(sw.ports.items())
                if msg.port_no in (OFPP_ANY, no)
            ]
        elif t == ofp.OFPMP_PORT_DESC:
            items = [_port_desc(p) for _, p in sorted(sw.ports.items())]
        elif t == ofp.OFPMP_GROUP_DESC:
            items = [
                enc.pack_group_desc(
                    GROUP_TYPES_TO_OFP[g.desc.type], gid, [bucket_to_ofp(b) for b in g.desc.buckets]
                )
                for gid, g in sorted(sw.pipeline.groups.items())
            ]
        elif t == ofp.OFPMP_GROUP:
            gsel = msg.group_id
            items = [
                enc.pack_group_stats(
                    gid,
                    _group_refs(sw, gid),
                    g.packet_count,
                    g.byte_count,
                    0.0,
                    [(c, 0) for c in g.bucket_counts],
                )
                for gid, g in sorted(sw.pipeline.groups.items())
                if gsel in (ofp.OFPG_ALL, gid)
            ]
        elif t == ofp.OFPMP_METER_CONFIG:
            items = [
                enc.pack_meter_config(
                    m.config.flags,
                    mid,
                    [parser.OFPMeterBandDrop(b.rate, b.burst) for b in m.config.bands],
                )
                for mid, m in sorted(sw.meters.meters.items())
                if msg.meter_id in (ofp.OFPM_ALL, mid)
            ]
        elif t == ofp.OFPMP_METER:
            items = [
                enc.pack_meter_stats(
                    mid,
                    _meter_refs(sw, mid),
                    m.packet_count,
                    m.byte_count,
                    now - m.created,
                    [(d, 0) for d in m.band_drops],
                )
                for mid, m in sorted(sw.meters.meters.items())
                if msg.meter_id in (ofp.OFPM_ALL, mid)
            ]
        elif t == ofp.OFPMP_TABLE_FEATURES:
            n = len(sw.pipeline.tables)
            items = [enc.pack_table_features(tb.table_id, n, tb.name) for tb in sw.pipeline.tables]
        elif t == ofp.OFPMP_METER_FEATURES:
            items = [
                struct.pack(
                    ofp.OFP_METER_FEATURES_PACK_STR,
                    1 << 16,
                    1 << ofp.OFPMBT_DROP,
                    ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS,
                    1,
                    0,
                )
            ]
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, f"multipart type {t}")
        return enc.multipart_replies(xid, t, items)


def _packet_in_match(key: tuple[int, ...]) -> parser.OFPMatch:
    kw: dict[str, Any] = {"in_port": key[fk.IN_PORT]}
    if key[fk.METADATA]:
        kw["metadata"] = key[fk.METADATA]
    if key[fk.TUN_ID]:
        kw["tunnel_id"] = key[fk.TUN_ID]
    for i in range(16):
        v = key[fk.REG0 + i]
        if v:
            kw[f"reg{i}"] = v
    return parser.OFPMatch(**kw)


def _flow_stats(r: Rule, now: float) -> bytes:
    fl = r.flow
    return enc.pack_flow_stats(
        fl.table,
        max(0.0, now - r.created),
        fl.priority,
        fl.idle_timeout,
        fl.hard_timeout,
        fl.flags,
        fl.cookie,
        r.packet_count,
        r.byte_count,
        match_to_ofp(fl.match),
        instructions_to_ofp(fl.instructions, fl.match),
    )


def _port_desc(p: Port) -> bytes:
    config = 0 if p.admin_up else ofp.OFPPC_PORT_DOWN
    state = ofp.OFPPS_LIVE if p.live else ofp.OFPPS_LINK_DOWN
    return enc.pack_port(p.port_no, p.device.hw_addr, p.name, config, state)


def _port_stats(p: Port, now: float) -> bytes:
    s = p.stats
    dur = max(0.0, now - p.created)
    sec = int(dur)
    return struct.pack(
        ofp.OFP_PORT_STATS_PACK_STR,
        p.port_no,
        s.rx_packets,
        s.tx_packets,
        s.rx_bytes,
        s.tx_bytes,
        s.rx_dropped,
        s.tx_dropped,
        s.rx_errors,
        s.tx_errors,
        0,
        0,
        0,
        0,
        sec,
        int((dur - sec) * 1e9),
    )


def _group_refs(sw: Switch, gid: int) -> int:
    sel = FlowMod(FlowModCommand.DELETE, Flow(match=Match(), table=0xFF), out_group=gid)
    return len(sw.pipeline.select(sel))


def _meter_refs(sw: Switch, mid: int) -> int:
    return sum(1 for r in sw.pipeline.rules() if r.instructions.meter == mid)
