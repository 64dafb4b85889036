"""The controller side of an OpenFlow 1.3 connection, on asyncio.

One `SwitchChannel` per connected switch, whoever dialled: the controller's
listener accepts switches that were told `--controller tcp:...` (Open
vSwitch's `set-controller`), or the controller dials a switch's passive
listener.  The channel does the handshake (HELLO, FEATURES -> datapath id),
answers echo requests, matches replies to requests by xid (multipart replies
are gathered until the last part), and hands asynchronous messages (port
status, packet-in, a vnet switch's BFD_STATUS (`vnetext`); errors nobody
waits for are logged) to callbacks.

Messages are encoded and decoded with os-ken's OpenFlow 1.3 codec, so the
other end may be any OpenFlow 1.3 switch; conversion to vnet's own flow
types goes through `convert`, the one boundary with os-ken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..pipeline.actions import Action, Output
from ..pipeline.flow import Flow, FlowMod, FlowModCommand
from .convert import DP, actions_to_ofp, flow_from_ofp, match_to_ofp
from .convert import flow_mod_to_ofp as _flow_mod
from .vnetext import (
    BFD_STATUS,
    VNET_EXPERIMENTER,
    BfdWant,
    decode_status,
    encode_config,
    encode_stand_down,
    split,
)

T = TypeVar("T")

__all__ = ["ChannelError", "SwitchChannel", "connect", "flow_mod_to_ofp"]

log = logging.getLogger("vnet.ofp.channel")
_HDR = struct.Struct("!BBHI")
_COMMANDS = {
    FlowModCommand.ADD: ofp.OFPFC_ADD,
    FlowModCommand.MODIFY: ofp.OFPFC_MODIFY,
    FlowModCommand.MODIFY_STRICT: ofp.OFPFC_MODIFY_STRICT,
    FlowModCommand.DELETE: ofp.OFPFC_DELETE,
    FlowModCommand.DELETE_STRICT: ofp.OFPFC_DELETE_STRICT,
}


NX_VENDOR_ID = 0x00002320
NXT_TLV_TABLE_MOD = 24  # Open vSwitch: map Geneve option TLVs to tun_metadata fields
NXTTMC_ADD = 0


class ChannelError(ConnectionError):
    pass


def flow_mod_to_ofp(mod: FlowMod) -> Any:
    msg = _flow_mod(mod.flow, _COMMANDS[mod.command])
    if mod.command in (FlowModCommand.DELETE, FlowModCommand.DELETE_STRICT):
        msg.out_port, msg.out_group = ofp.OFPP_ANY, ofp.OFPG_ANY
        msg.match = match_to_ofp(mod.flow.match)
    return msg


class SwitchChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.dpid = 0
        self.peer = str(writer.get_extra_info("peername") or "unix")
        self._xid = 0x10000
        self._waiting: dict[int, tuple[asyncio.Future[list[Any]], list[Any]]] = {}
        self._errors: dict[int, tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self.on_port_status: Callable[[Any], None] | None = None
        self.on_packet_in: Callable[[Any], None] | None = None
        self.on_close: Callable[[SwitchChannel], None] | None = None
        # a vnet switch's BFD sessions: (peer address -> state, whether that is all of them)
        self.on_bfd_status: Callable[[dict[int, str], bool], None] | None = None
        self.closed = asyncio.Event()
        self.flow_mods_sent = 0
        self.down: set[str] = set()  # ports whose link was down at the last `ports()`

    # -- lifecycle -----------------------------------------------------------------------
    async def handshake(self, timeout: float = 10.0) -> int:
        """HELLO and FEATURES; returns the datapath id."""
        self._send(parser.OFPHello(DP))
        mtype, _, raw = await asyncio.wait_for(self._read(), timeout)
        if mtype != ofp.OFPT_HELLO or raw[0] < ofp.OFP_VERSION:
            self._send_error_hello_failed()
            raise ChannelError(f"{self.peer}: does not speak OpenFlow 1.3")
        self._task = asyncio.create_task(self._reader_loop())
        (features,) = await asyncio.wait_for(self.request(parser.OFPFeaturesRequest(DP)), timeout)
        self.dpid = int(features.datapath_id)
        # a nonzero miss_send_len: Open vSwitch sends asynchronous messages (PORT_STATUS)
        # on a service connection (its bridge.mgmt socket) only after one
        self._send(parser.OFPSetConfig(DP, 0, ofp.OFPCML_NO_BUFFER))
        return self.dpid

    def _send_error_hello_failed(self) -> None:
        self._send(parser.OFPErrorMsg(DP, type_=ofp.OFPET_HELLO_FAILED, code=0, data=b""))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()
        self._fail_waiters(ChannelError(f"{self.peer}: connection closed"))
        if not self.closed.is_set():
            self.closed.set()
            if self.on_close is not None:
                self.on_close(self)

    def _fail_waiters(self, exc: Exception) -> None:
        for fut, _ in self._waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        self._waiting.clear()

    # -- I/O -------------------------------------------------------------------------------
    def _send(self, msg: Any) -> int:
        self._xid += 1
        msg.set_xid(self._xid)
        msg.serialize()
        self.writer.write(bytes(msg.buf))
        return self._xid

    async def _read(self) -> tuple[int, int, bytes]:
        head = await self.reader.readexactly(8)
        _, mtype, length, xid = _HDR.unpack(head)
        body = await self.reader.readexactly(max(0, length - 8))
        return mtype, xid, head + body

    async def _reader_loop(self) -> None:
        try:
            while True:
                mtype, xid, raw = await self._read()
                self._dispatch(mtype, xid, raw)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: channel failed", self.peer)
        finally:
            self.close()

    def _dispatch(self, mtype: int, xid: int, raw: bytes) -> None:
        if mtype == ofp.OFPT_ECHO_REQUEST:
            hdr = _HDR.pack(ofp.OFP_VERSION, ofp.OFPT_ECHO_REPLY, len(raw), xid)
            self.writer.write(hdr + raw[8:])
            return
        if mtype == ofp.OFPT_ERROR:
            t, c = struct.unpack_from("!HH", raw, 8)
            self._errors[xid] = (t, c)
            if xid in self._waiting:  # a request that itself failed
                fut, _ = self._waiting.pop(xid)
                if not fut.done():
                    fut.set_exception(ChannelError(f"switch refused request: type {t} code {c}"))
            else:
                log.debug("%s: error %d/%d for xid %d", self.peer, t, c, xid)
            return
        if mtype == ofp.OFPT_EXPERIMENTER:
            ours = split(raw)
            if ours is not None and ours[:2] == (VNET_EXPERIMENTER, BFD_STATUS):
                try:
                    states, full = decode_status(ours[2])
                except ValueError as e:
                    log.warning("%s: %s", self.peer, e)
                    return
                if self.on_bfd_status is not None:
                    self.on_bfd_status(states, full)
                return
        try:
            msg = parser.msg_parser(DP, raw[0], mtype, len(raw), xid, raw)
        except Exception:
            log.warning("%s: undecodable message type %d", self.peer, mtype)
            return
        if mtype == ofp.OFPT_PORT_STATUS:
            if self.on_port_status is not None:
                self.on_port_status(msg)
            return
        if mtype == ofp.OFPT_PACKET_IN:
            if self.on_packet_in is not None:
                self.on_packet_in(msg)
            return
        slot = self._waiting.get(xid)
        if slot is None:
            return
        fut, parts = slot
        parts.append(msg)
        more = mtype == ofp.OFPT_MULTIPART_REPLY and msg.flags & ofp.OFPMPF_REPLY_MORE
        if not more:
            del self._waiting[xid]
            if not fut.done():
                fut.set_result(parts)

    async def request(self, msg: Any) -> list[Any]:
        """Send `msg`; its reply (all parts of a multipart reply)."""
        if self.closed.is_set():
            raise ChannelError(f"{self.peer}: connection closed")
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        xid = self._send(msg)
        self._waiting[xid] = (fut, [])
        await self.writer.drain()
        return await fut

    # -- what the controller asks ---------------------------------------------------------------
    async def ports(self) -> dict[str, int]:
        """Interface name -> OpenFlow port number."""
        out: dict[str, int] = {}
        down = set()
        for reply in await self.request(parser.OFPPortDescStatsRequest(DP, 0)):
            for p in reply.body:
                name = p.name.decode(errors="replace") if isinstance(p.name, bytes) else p.name
                name = name.rstrip("\0")
                out[name] = int(p.port_no)
                if p.state & ofp.OFPPS_LINK_DOWN or p.config & ofp.OFPPC_PORT_DOWN:
                    down.add(name)
        self.down = down
        return out

    async def flows(self) -> list[tuple[Flow, int, int]]:
        """Every installed flow, with its packet and byte counters."""
        req = parser.OFPFlowStatsRequest(
            DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch()
        )
        out = []
        for reply in await self.request(req):
            for st in reply.body:
                out.append((flow_from_ofp(st), int(st.packet_count), int(st.byte_count)))
        return out

    async def send_flow_mods(self, mods: Sequence[FlowMod]) -> list[tuple[FlowMod, int, int]]:
        """Send `mods` and a barrier; the ones the switch refused, with type and code."""
        self.flow_mods_sent += len(mods)
        return await self.send_all([(m, flow_mod_to_ofp(m)) for m in mods])

    async def send_all(self, msgs: Sequence[tuple[T, Any]]) -> list[tuple[T, int, int]]:
        """Send each (tag, OpenFlow message) in order, then a barrier; the tags of
        the messages the switch refused, with the error's type and code.  A switch
        answers errors before the barrier's reply, so the barrier covers them all."""
        xids = []
        for n, (_, msg) in enumerate(msgs, 1):
            xids.append(self._send(msg))
            if n % 256 == 0:
                await self.writer.drain()
        await self.request(parser.OFPBarrierRequest(DP))
        return [
            (tag, *self._errors.pop(x))
            for (tag, _), x in zip(msgs, xids, strict=True)
            if x in self._errors
        ]

    async def packet_out(
        self,
        in_port: int,
        frame: bytes,
        out_port: int | None = ofp.OFPP_TABLE,
        actions: Sequence[Action] = (),
    ) -> None:
        """Send `frame` through the switch's pipeline as if it came in on `in_port`
        (or, with `out_port`, straight out of that port), `actions` run first
        (e.g. a register load the pipeline reads); `out_port` None: no output but
        what `actions` do (a resubmit into a table)."""
        outs = [] if out_port is None else [Output(out_port)]
        acts = actions_to_ofp([*actions, *outs])
        msg = parser.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, in_port, acts, frame)
        self._send(msg)
        await self.writer.drain()

    async def configure_bfd(self, wants: Sequence[BfdWant]) -> None:
        """Tell a vnet switch the BFD sessions to run (all of them); it answers with a
        BFD_STATUS of every session (`on_bfd_status`)."""
        self._xid += 1
        self.writer.write(encode_config(list(wants), self._xid))
        await self.writer.drain()

    async def configure_stand_down(self, cookies: Iterable[int]) -> None:
        """Tell a vnet switch the cookies of the flows that stand down while it is
        isolated (all of them; vnet's STAND_DOWN)."""
        self._xid += 1
        self.writer.write(encode_stand_down(cookies, self._xid))
        await self.writer.drain()

    async def map_tlv(self, option_class: int, option_type: int, length: int, index: int) -> bool:
        """Map a Geneve option to `tun_metadata<index>` (Open vSwitch's NXT_TLV_TABLE_MOD).

        True if the switch took it; a switch that already has a mapping refuses
        another (ALREADY_MAPPED), which the caller may take as done.
        """
        body = struct.pack("!H6x", NXTTMC_ADD) + struct.pack(
            "!HBBH2x", option_class, option_type, length, index
        )
        xid = self._send(parser.OFPExperimenter(DP, NX_VENDOR_ID, NXT_TLV_TABLE_MOD, body))
        await self.request(parser.OFPBarrierRequest(DP))
        return self._errors.pop(xid, None) is None


async def connect(target: tuple[str, str, int]) -> SwitchChannel:
    """Dial a switch's passive listener (`tcp:` or `unix:`)."""
    kind, host, port = target
    if kind == "unix":
        reader, writer = await asyncio.open_unix_connection(host)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    return SwitchChannel(reader, writer)
