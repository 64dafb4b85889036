"""The controller at run time: switch sessions kept equal to the model.

Each switch is a `Session` over a southbound -- an OpenFlow 1.3 channel to a
vnet switch or an Open vSwitch, or a vnet `Switch` object in this process
(`LocalSouthbound`, the embedded default and the lab's `--sim` backend).  A
session belongs to the chassis whose datapath id the switch reports.

On (re)connect a session does a full comparison: it reads the switch's port
descriptions and installed state (flows, groups, meters: `read_state`),
compiles and localizes the model for that chassis into its `Desired` state
(its flows, and the meters the model's flows name: the firewall's log
meter, so a logged deny's flow is never refused for a missing meter),
and sends only the difference (`reconcile.diff`) in one southbound apply
(`apply`), which ends with a barrier.
Afterwards it keeps a mirror of what it installed and sends deltas when the
model changes (store subscription, and a revision poll for writers in other
processes) or a port comes or goes (PORT_STATUS).  An unchanged model
against a switch that already has the flows sends nothing at all, which is
why a controller restart interrupts no traffic.  `drift` reads the switch
again and reports what differs from the model, with provenance; `repair`
sends the difference.

An Open vSwitch chassis that names its OVSDB (`ovsdb`) also gets a keeper
task: through `ovsdb.OvsdbBridge` it keeps the chassis' bridge configured
(datapath id, OpenFlow 1.3, fail mode secure, and this controller as its
controller unless the chassis names an `endpoint` the controller dials --
the lab points that at the bridge's own `.mgmt` socket) and the model's ports bound there plugged into it.  Open
vSwitch then dials in over OpenFlow like a vnet switch, and from there on
the session is the same.

Packet-ins from every session go to the punt handler (`punt.Punter`): it
answers what the firewall rejects, keeps the connection log and sends a
router's ICMP errors (time exceeded, unreachable); it asks for a router's
next hops that are not model ports and learns their MACs into the store
(`neighbour`), and a periodic task (`_ager`) asks again for bindings half
their age old and deletes those not heard from for `neighbour_age` seconds
(default 300; 0: never).  A
packet-out may run actions before its output (the punt handler's answers
load the firewall's answer flag into a register the pipeline reads).
After each reconcile pass the cutter (`cut.Cutter`) flushes the conntrack
entries of connections the model change denies.
A vnet switch is told the BFD sessions it runs (`bfd.wants`, vnet's
BFD_CONFIG experimenter message, on a sync when they changed); what its
sessions report (BFD_STATUS) becomes its chassis' `bfd_status` in the store
(`bfd.Reports`), from which the active gateway chassis is chosen.  It is also
told the cookies of its flows that stand down while it is isolated from every
BFD peer (`compiler.standing_down`: those that make it a router's active
gateway; vnet's STAND_DOWN) on each connection and when they change: before
the flow-mods, the new set with the last (the flows it gains stand down from
the start, those it loses until they are gone), after them the new set
alone.  An Open vSwitch chassis' keeper plugs a BFD port per session
(`ovsdb.bfd_ports`) and hands what their `bfd_status` columns say to the
same `bfd.Reports`.

The same class is a chassis' agent (`vnet agent run`) when given a `scope`:
it programs that chassis' switch only (dialled at `dial`, or dialling in),
leaves any other switch alone, does no singleton work (neighbour aging),
watches the store for other processes' writes every `AGENT_POLL`, and after
each pass writes what it alone knows into the store -- its `chassis_status`
(the switch session held, the ports made up), when it changed, and on a
clean stop that it left.  A controller with no session to a chassis reads
its ports' status from that report (`port_status`).  An agent that dies
without a word leaves its last report (an etcd lease will end it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..compiler import Compiler, LFlow, Memo, local_groups, localize
from ..compiler.acl import LOG_METER, MeterSpec
from ..compiler.logical import standing_down
from ..datapath.meters import OFPMF_PKTPS, Band, MeterConfig
from ..model.objects import Chassis, Network, Port
from ..model.rules import ModelError, State
from ..ofp.channel import ChannelError, SwitchChannel, connect, flow_mod_to_ofp
from ..ofp.convert import DP, GROUP_TYPES_TO_OFP, bucket_to_ofp, group_from_ofp
from ..ofp.target import parse_target
from ..ofp.vnetext import BfdWant
from ..packet import flowkey as fk
from ..packet.announce import announcements
from ..pipeline.actions import OFPP_TABLE, Action, Output
from ..pipeline.flow import Flow, FlowMod
from ..pipeline.groups import GroupMod, GroupModCommand
from ..pipeline.ofctl import format_flow
from ..store import Store, StoreError
from .bfd import Reports, gateway_announcements
from .bfd import wants as bfd_wants
from .cut import Cutter
from .neighbour import NEIGHBOUR_AGE, Neighbours, sweep_interval
from .northbound import Diff, Northbound
from .ovsdb import OvsdbBridge, OvsdbError
from .punt import (
    ANSWER,
    RA_INTERVAL,
    PacketIn,
    Punter,
    ask_for_packet_ins,
    compiled_punts,
    from_ofp,
)
from .reconcile import Desired, Drift, MeterMod, Mod, diff, drift
from .trace import PathTrace, model_ofports, outside_start, port_start, scratch_switch, trace_path

__all__ = ["Controller", "LocalSouthbound", "Session", "Southbound", "apply", "read_state"]

log = logging.getLogger("vnet.controller")
POLL = 1.0
AGENT_POLL = 0.1  # an agent: a port's flows follow another process' write quickly
MIGRATE_WAIT = 5.0  # how long a migration waits for the switches before it answers
# vnet's Geneve option (OVN's: class 0x0102, type 0x80, 4 bytes) as tun_metadata0
GENEVE_TLV = (0x0102, 0x80, 4, 0)
OVSDB_RETRY = 2.0
METERS = (LOG_METER,)  # the meters compiled flows may name


def _meter(m: MeterSpec) -> MeterConfig:
    return MeterConfig(m.meter_id, OFPMF_PKTPS, (Band(m.rate, m.burst),))


def ovs_ports(state: State, ch: Chassis) -> dict[str, str]:
    """The ports vnet plugs into an Open vSwitch chassis' bridge: interface -> owner --
    the model's ports bound there, and the uplink of each of its physical networks
    (`physnets`, the localnet port of external networks on them: `physnet:<name>`)."""
    out = {p.iface: p.id for p in state.all("port") if p.chassis == ch.id}
    for net, iface in sorted(ch.physnets.items()):
        out.setdefault(iface, f"physnet:{net}")
    return out


class Southbound(Protocol):
    dpid: int
    flow_mods_sent: int
    down: set[str]  # ports whose link was down at the last `ports()`

    async def ports(self) -> dict[str, int]: ...

    async def flows(self) -> list[tuple[Flow, int, int]]: ...

    async def send_flow_mods(self, mods: Sequence[FlowMod]) -> list[tuple[FlowMod, int, int]]: ...

    async def packet_out(
        self,
        in_port: int,
        frame: bytes,
        out_port: int | None = OFPP_TABLE,
        actions: Sequence[Action] = (),
    ) -> None: ...


class LocalSouthbound:
    """A vnet `Switch` in this process, programmed without a socket."""

    def __init__(self, switch: Any) -> None:
        self.switch = switch
        self.dpid = switch.dpid
        self.flow_mods_sent = 0
        self.down: set[str] = set()

    async def ports(self) -> dict[str, int]:
        self.down = {p.name for p in self.switch.ports.values() if not p.live}
        return {p.name: no for no, p in self.switch.ports.items()}

    async def flows(self) -> list[tuple[Flow, int, int]]:
        return [
            (r.flow, r.packet_count, r.byte_count)
            for t in self.switch.pipeline.tables
            for r in t.by_id.values()
        ]

    async def send_flow_mods(self, mods: Sequence[FlowMod]) -> list[tuple[FlowMod, int, int]]:
        self.flow_mods_sent += len(mods)
        refused = []
        for m in mods:  # one at a time: a refused mod must not hold the others back
            try:
                self.switch.commit([m])
            except Exception as e:
                log.warning("switch refused %s: %s", m.flow.origin, e)
                refused.append((m, 0, 0))
        return refused

    async def packet_out(
        self,
        in_port: int,
        frame: bytes,
        out_port: int | None = OFPP_TABLE,
        actions: Sequence[Action] = (),
    ) -> None:
        outs = [] if out_port is None else [Output(out_port)]
        self.switch.packet_out(in_port, [*actions, *outs], frame)

    def deliver_packet_ins(self, to: Callable[[PacketIn], None]) -> None:
        """Hand the switch's packet-ins to `to`, as a connected controller would get them."""
        dpid = self.dpid
        self.switch.on_packet_in = lambda pi: to(
            PacketIn(dpid, pi.key[fk.IN_PORT], pi.cookie, pi.reason, pi.frame)
        )
        if not self.switch.controllers_connected:
            self.switch.controller_connected(+1)

    async def state(self) -> Desired:
        flows = [f for f, _, _ in await self.flows()]
        groups = [g.desc for _, g in sorted(self.switch.pipeline.groups.items())]
        meters = [m.config for _, m in sorted(self.switch.meters.meters.items())]
        return Desired(flows, groups, meters)

    async def apply(self, mods: Sequence[Mod]) -> list[tuple[Mod, int, int]]:
        self.flow_mods_sent += sum(isinstance(m, FlowMod) for m in mods)
        refused: list[tuple[Mod, int, int]] = []
        for m in mods:  # one at a time: a refused mod must not hold the others back
            try:
                if isinstance(m, MeterMod):
                    self.switch.meter_mod(m.meter, m.command)
                else:
                    self.switch.commit([m])
            except Exception as e:
                log.warning("switch refused %s: %s", _what(m), e)
                refused.append((m, 0, 0))
        return refused


def _text(m: Mod) -> str:
    """A mod as a dry run shows it."""
    if isinstance(m, FlowMod):
        return f"{m.command.value} {format_flow(m.flow)}"
    if isinstance(m, GroupMod):
        return f"{m.command.value} group_id={m.group.group_id},type={m.group.type.value}"
    return f"{m.command} meter={m.meter.meter_id}"


def _what(m: Mod) -> str:
    if isinstance(m, FlowMod):
        return m.flow.origin or format_flow(m.flow)
    if isinstance(m, GroupMod):
        return f"group {m.group.group_id}"
    return f"meter {m.meter.meter_id}"


async def read_state(sb: Southbound) -> Desired:
    """What a switch holds: its flows, groups and meters."""
    if isinstance(sb, LocalSouthbound):
        return await sb.state()
    flows = [f for f, _, _ in await sb.flows()]
    if not isinstance(sb, SwitchChannel):
        return Desired(flows)
    groups = [
        group_from_ofp(g.group_id, g.type, g.buckets)
        for reply in await _optional(sb, parser.OFPGroupDescStatsRequest(DP, 0))
        for g in reply.body
    ]
    meters = [
        MeterConfig(m.meter_id, m.flags, tuple(Band(b.rate, b.burst_size, b.type) for b in m.bands))
        for reply in await _optional(sb, parser.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL))
        for m in reply.body
    ]
    return Desired(flows, groups, meters)


async def _optional(ch: SwitchChannel, request: Any) -> list[Any]:
    """A table the switch may not have (an Open vSwitch datapath without meters): none."""
    try:
        return await ch.request(request)
    except ChannelError:
        if ch.closed.is_set():
            raise
        log.info("switch %016x has no %s", ch.dpid, type(request).__name__)
        return []


_GROUP_CMDS = {
    GroupModCommand.ADD: ofp.OFPGC_ADD,
    GroupModCommand.MODIFY: ofp.OFPGC_MODIFY,
    GroupModCommand.DELETE: ofp.OFPGC_DELETE,
}
_METER_CMDS = {"add": ofp.OFPMC_ADD, "modify": ofp.OFPMC_MODIFY, "delete": ofp.OFPMC_DELETE}


def _to_ofp(m: GroupMod | MeterMod) -> Any:
    if isinstance(m, GroupMod):
        g = m.group
        return parser.OFPGroupMod(
            DP, _GROUP_CMDS[m.command], GROUP_TYPES_TO_OFP[g.type], g.group_id,
            [bucket_to_ofp(b) for b in g.buckets],
        )  # fmt: skip
    c = m.meter
    bands = [parser.OFPMeterBandDrop(b.rate, b.burst) for b in c.bands]
    return parser.OFPMeterMod(DP, _METER_CMDS[m.command], c.flags, c.meter_id, bands)


async def apply(sb: Southbound, mods: Sequence[Mod]) -> list[tuple[Mod, int, int]]:
    """Send `mods` in their order and wait for the switch; the ones it refused.

    Over OpenFlow, groups and meters go in the same stream as the flow-mods,
    so the flow-mods' barrier covers them too.
    """
    if isinstance(sb, LocalSouthbound):
        return await sb.apply(mods)
    if not isinstance(sb, SwitchChannel):
        flow_mods = [m for m in mods if isinstance(m, FlowMod)]
        if len(flow_mods) != len(mods):
            raise TypeError(f"{type(sb).__name__} takes flow-mods only")
        return list(await sb.send_flow_mods(flow_mods))
    msgs = [(m, flow_mod_to_ofp(m) if isinstance(m, FlowMod) else _to_ofp(m)) for m in mods]
    sb.flow_mods_sent += sum(isinstance(m, FlowMod) for m in mods)
    return await sb.send_all(msgs)


@dataclass
class Session:
    southbound: Southbound
    chassis: str | None = None  # the chassis id, once known
    ofports: dict[str, int] = field(default_factory=dict)
    installed: Desired | None = None  # what we installed; None: never synced
    synced_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    full: bool = True  # next sync reads the switch back
    ports_stale: bool = False  # a port came or went: next sync reads the port numbers
    tlv_mapped: bool = False  # Open vSwitch knows vnet's Geneve option as tun_metadata0
    bfd_sent: list[BfdWant] | None = None  # the BFD sessions a vnet switch was last told
    stand_down_sent: frozenset[int] | None = None  # the stand-down cookies it was last told

    @property
    def dpid(self) -> int:
        return self.southbound.dpid


class Controller:
    def __init__(
        self,
        store: Store,
        of_listen: Sequence[str] = (),
        of_advertise: str | None = None,
        neighbour_age: float = NEIGHBOUR_AGE,
        scope: str | None = None,
        dial: str | None = None,
    ) -> None:
        self.store = store
        # an agent's chassis (name or id): the only one it programs; None: every chassis
        self.scope = scope
        self.dial = parse_target(dial) if dial is not None else None  # its switch, dialled
        self._status_task: asyncio.Task[None] | None = None
        self.of_advertise = of_advertise
        self.nb = Northbound(store)
        self.compiler = Compiler()
        self._bindings: Memo = {}  # localize's memo, shared by every chassis
        self.listen = [parse_target(t) for t in of_listen]
        self.sessions: dict[int, Session] = {}
        self.servers: list[asyncio.Server] = []
        self.flow_mods_total = 0
        self._lflows: tuple[int, list[LFlow]] | None = None
        self._meters: tuple[int, list[MeterConfig]] | None = None
        self._stand_down: tuple[int, dict[str, frozenset[int]]] | None = None
        self._dirty: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen_revision = -1
        self._dialing: dict[str, asyncio.Task[None]] = {}
        self._keepers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self.ovsdb_status: dict[str, str] = {}  # chassis id -> last outcome
        # workload mobility: where each port was bound at the last model seen, and the
        # ports that moved whose new chassis has yet to announce them (port id -> chassis)
        self._bound: tuple[int, dict[str, str | None]] | None = None
        self.announce: dict[str, str] = {}
        self._left: set[str] = set()  # chassis a port just left: synced after the others
        self.announced = 0
        self.cutter = Cutter()
        self.neighbours = Neighbours(self.nb, neighbour_age)  # routers' learned neighbours
        self.bfd = Reports(self.nb)  # what vnet switches' BFD sessions say (`bfd`)
        self.gateways_announced: dict[str, str] = {}  # router -> chassis it was announced on
        self.punter = Punter(
            self.nb.state,
            self.sessions.get,
            lambda st: compiled_punts(self.logical_flows(st)),
            neighbours=self.neighbours,
        )

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._dirty = asyncio.Event()
        for kind, host, port in self.listen:
            if kind == "ptcp":
                srv = await asyncio.start_server(self._accept, host, port)
            elif kind == "punix":
                srv = await asyncio.start_unix_server(self._accept, host)
            else:
                raise ValueError(f"{kind}: listen with ptcp:PORT[:IP] or punix:PATH")
            self.servers.append(srv)
        self.store.subscribe(lambda _events: self.kick())
        self.punter.start()
        self._tasks.append(asyncio.create_task(self._reconciler()))
        self._tasks.append(asyncio.create_task(self._poller()))
        self._tasks.append(asyncio.create_task(self._advertiser()))
        if self.scope is None:  # singleton work: the controller's, not an agent's
            self._tasks.append(asyncio.create_task(self._ager()))
        if self.dial is not None:
            self._dialing["--switch"] = asyncio.create_task(self._dial("--switch", self.dial))
        self.kick()

    def bound_ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers if s.sockets]

    async def stop(self) -> None:
        keepers = [t for t, _ in self._keepers.values()]
        for t in [*self._tasks, *self._dialing.values(), *keepers]:
            t.cancel()
        for srv in self.servers:
            srv.close()
        for s in list(self.sessions.values()):
            if isinstance(s.southbound, SwitchChannel):
                s.southbound.close()
        for t in [*self._tasks, *self._dialing.values(), *keepers]:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        self._dialing.clear()
        self._keepers.clear()
        await self.punter.stop()
        if self.scope is not None:  # an agent leaving says so: its chassis' ports are not up
            mine = self.scope_id(self.nb.state())
            if mine is not None:
                with contextlib.suppress(ModelError, StoreError):
                    await asyncio.to_thread(self.nb.report_chassis, mine, False, [])

    def kick(self) -> None:
        """The model or a switch changed: reconcile soon (safe from any thread)."""
        loop, dirty = self._loop, self._dirty
        if loop is not None and dirty is not None:
            loop.call_soon_threadsafe(dirty.set)

    # -- switches ---------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._attach_channel(SwitchChannel(reader, writer))

    async def _attach_channel(self, ch: SwitchChannel) -> Session | None:
        try:
            await ch.handshake()
            ch.on_packet_in = lambda msg: self.punter.received(from_ofp(ch.dpid, msg))
            await ask_for_packet_ins(ch)
        except (TimeoutError, ChannelError, OSError, asyncio.IncompleteReadError) as e:
            log.warning("switch %s: handshake failed: %s", ch.peer, e)
            ch.close()
            return None
        ch.on_port_status = lambda _msg: self._port_status(ch.dpid)
        ch.on_bfd_status = lambda states, full: self._bfd_status(ch.dpid, states, full)
        ch.on_close = lambda c: self._detach(c.dpid, c)
        return await self.attach(ch)

    async def attach(self, sb: Southbound) -> Session:
        old = self.sessions.get(sb.dpid)
        if (
            old is not None
            and isinstance(old.southbound, SwitchChannel)
            and old.southbound is not sb
        ):
            old.southbound.close()
        sess = Session(sb)
        self.sessions[sb.dpid] = sess
        if isinstance(sb, LocalSouthbound):
            sb.deliver_packet_ins(self.punter.received)
        log.info("switch %016x connected", sb.dpid)
        await self.sync(sess)
        return sess

    def _detach(self, dpid: int, ch: SwitchChannel) -> None:
        s = self.sessions.get(dpid)
        if s is not None and s.southbound is ch:
            del self.sessions[dpid]
            log.info("switch %016x disconnected", dpid)
            if self.scope is not None:
                self.kick()  # an agent says its switch is gone

    def _bfd_status(self, dpid: int, states: dict[int, str], full: bool) -> None:
        ch = self.chassis_of(self.nb.state(), dpid)
        if ch is not None:
            self.bfd.received(ch.id, states, full)

    def _port_status(self, dpid: int) -> None:
        s = self.sessions.get(dpid)
        if s is not None:
            s.ports_stale = True  # port numbers may have changed: read them again
            self.kick()

    async def _dial(self, name: str, target: tuple[str, str, int]) -> None:
        """Keep a connection to a switch: a chassis' that names its endpoint, or an
        agent's own (`dial`)."""
        backoff = 0.5
        while True:
            try:
                ch = await connect(target)
                sess = await self._attach_channel(ch)
                if sess is not None:
                    backoff = 0.5
                    await ch.closed.wait()
            except OSError as e:
                log.debug("switch of %s: %s", name, e)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 8.0)

    # -- reconciliation ------------------------------------------------------------------------
    def chassis_of(self, state: State, dpid: int) -> Chassis | None:
        want = f"{dpid:016x}"
        return next((c for c in state.all("chassis") if c.datapath_id == want), None)

    def logical_flows(self, state: State) -> list[LFlow]:
        if self._lflows is None or self._lflows[0] != state.revision:
            self._lflows = (state.revision, self.compiler.compile(state))
        return self._lflows[1]

    def stand_down(self, state: State) -> dict[str, frozenset[int]]:
        """Chassis id -> the cookies of its flows that stand down while it is isolated."""
        if self._stand_down is None or self._stand_down[0] != state.revision:
            marked, shared = standing_down(self.logical_flows(state))
            for c in sorted(shared):
                log.warning("cookie %#x: a flow that stands down shares it with one that "
                            "does not; neither stands down", c)  # fmt: skip
            self._stand_down = (state.revision, marked)
        return self._stand_down[1]

    def meters(self, state: State) -> list[MeterConfig]:
        """The meters the model's flows use (the firewall's log meter), for every chassis."""
        if self._meters is None or self._meters[0] != state.revision:
            used = {lf.flow.instructions.meter for lf in self.logical_flows(state)}
            self._meters = (state.revision, [_meter(m) for m in METERS if m.meter_id in used])
        return self._meters[1]

    def desired(self, state: State, sess: Session) -> Desired | None:
        """What the session's switch should hold: the chassis' flows, the groups and
        the meters they use."""
        ch = self.chassis_of(state, sess.dpid)
        sess.chassis = ch.id if ch else None
        if ch is None:
            return None  # a switch no chassis claims: left alone
        if self.scope is not None and ch.id != self.scope_id(state):
            return None  # an agent programs its own chassis only
        lflows = self.logical_flows(state)
        flows = localize(lflows, state, ch, sess.ofports, self._bindings)
        groups = local_groups(lflows, state, ch, sess.ofports)  # a router's ECMP
        return Desired(flows, groups, list(self.meters(state)))

    def _track_moves(self, state: State) -> None:
        """A port whose chassis changed is to be announced from its new chassis."""
        if self._bound is not None and self._bound[0] == state.revision:
            return
        now = {p.id: p.chassis for p in state.all("port")}
        if self._bound is not None:
            before = self._bound[1]
            for pid, ch in now.items():
                if ch is not None and pid in before and before[pid] != ch:
                    self.announce[pid] = ch
                    if before[pid] is not None:
                        self._left.add(before[pid])  # type: ignore[arg-type]
        for pid in [p for p in self.announce if now.get(p) != self.announce[p]]:
            del self.announce[pid]
        self._bound = (state.revision, now)

    async def _announce(self, state: State, sess: Session) -> None:
        """Gratuitous ARP / unsolicited NA for ports that moved here, once they are bound."""
        for pid, ch in list(self.announce.items()):
            port = state.get("port", pid)
            if ch != sess.chassis or port is None or port.iface not in sess.ofports:
                continue
            if port.iface in sess.southbound.down:
                continue  # its cable has not arrived: announce when the link comes up
            del self.announce[pid]
            mac = int((port.mac or "0").replace(":", ""), 16)
            for frame in announcements(mac, port.ips):
                await sess.southbound.packet_out(sess.ofports[port.iface], frame)
                self.announced += 1
            where = state.get("chassis", ch)
            log.info("port %s announced on chassis %s", port.name, where.name if where else ch)

    async def _announce_gateways(self, state: State, sess: Session) -> None:
        """Gratuitous ARP / unsolicited NA out of the uplink for gateways newly active
        on this session's chassis (`bfd.gateway_announcements`)."""
        for a in gateway_announcements(state, sess.chassis or ""):
            if self.gateways_announced.get(a.router) == sess.chassis:
                continue
            ofport = sess.ofports.get(a.uplink)
            if ofport is None:
                continue
            mac = int(a.mac.replace(":", ""), 16)
            for frame in announcements(mac, a.addresses, a.vlan):
                await sess.southbound.packet_out(ofp.OFPP_CONTROLLER, frame, out_port=ofport)
            self.gateways_announced[a.router] = sess.chassis or ""
            log.info("router %s: gateway announced on chassis %s", a.router, sess.chassis)

    async def sync(self, sess: Session) -> int:
        """Make one switch equal to the model; returns the flow-mods it took."""
        async with sess.lock:
            sb = sess.southbound
            state = self.nb.state()
            self._track_moves(state)
            if sess.full or sess.installed is None or sess.ports_stale:
                sess.ports_stale = False
                sess.ofports = await sb.ports()
            want = self.desired(state, sess)
            if want is None:
                return 0
            if not sess.tlv_mapped and isinstance(sb, SwitchChannel):
                ch = state.get("chassis", sess.chassis or "")
                if ch is not None and ch.switch == "ovs":
                    ok = await sb.map_tlv(*GENEVE_TLV)
                    log.info("switch %016x: Geneve option -> tun_metadata0: %s",
                             sess.dpid, "mapped" if ok else "already mapped")  # fmt: skip
                sess.tlv_mapped = True
            stands: frozenset[int] | None = None  # a vnet switch's stand-down set
            if isinstance(sb, SwitchChannel):
                ch = state.get("chassis", sess.chassis or "")
                if ch is not None and ch.switch == "vnet":
                    bfd = bfd_wants(state, ch.id)
                    if bfd != sess.bfd_sent and (bfd or sess.bfd_sent is not None):
                        await sb.configure_bfd(bfd)
                        sess.bfd_sent = bfd
                    stands = self.stand_down(state).get(ch.id, frozenset())
                    before = stands | (sess.stand_down_sent or frozenset())
                    if before != sess.stand_down_sent:
                        await sb.configure_stand_down(before)
                        sess.stand_down_sent = before
            if sess.full or sess.installed is None:
                have = await read_state(sb)
            else:
                have = sess.installed
            mods = diff(want, have)
            refused = await apply(sb, mods) if mods else []
            for m, t, c in refused:
                log.warning("switch %016x refused %s (%d/%d)", sess.dpid, _what(m), t, c)
            if stands is not None and stands != sess.stand_down_sent:
                assert isinstance(sb, SwitchChannel)  # a vnet switch's, as above
                await sb.configure_stand_down(stands)
                sess.stand_down_sent = stands
            self.flow_mods_total += len(mods)
            sess.installed = want
            sess.full = bool(refused)
            sess.synced_at = time.monotonic()
            if self.announce:
                await self._announce(state, sess)
            await self._announce_gateways(state, sess)
            if mods:
                log.info("switch %016x: %d flow-mods", sess.dpid, len(mods))
            return len(mods)

    async def _reconciler(self) -> None:
        assert self._dirty is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            self._ensure_dialers()
            self._track_moves(self.nb.state())
            for sess in self._in_order():
                try:
                    await self.sync(sess)
                except (ChannelError, OSError) as e:
                    log.warning("switch %016x: %s", sess.dpid, e)
                except Exception:  # one switch's failure stops neither the others nor later passes
                    log.exception("switch %016x: sync failed", sess.dpid)
            # the flows stop what the change denies; its connections' entries go too
            await self.cutter.model_changed(self.nb.state(), self.sessions.values())
            if self.scope is not None:
                await self._report_chassis()

    def _in_order(self) -> list[Session]:
        """Sessions to sync: where ports moved to first, where they moved from last.

        A moving port's new chassis is ready (bound, holding frames until the cable
        arrives) before anyone tunnels to it, and its old chassis keeps delivering
        until every other chassis has turned to the new one.
        """
        to, left = set(self.announce.values()), self._left
        self._left = set()

        def rank(s: Session) -> int:
            return 0 if s.chassis in to else 2 if s.chassis in left else 1

        return sorted(self.sessions.values(), key=rank)

    async def _advertiser(self) -> None:
        """Unsolicited router advertisements to the ports of subnets with an ipv6_mode."""
        while True:
            await asyncio.sleep(RA_INTERVAL)
            try:
                await self.punter.advertise(list(self.sessions.values()))
            except Exception:
                log.exception("router advertisements")

    async def _ager(self) -> None:
        """Learned neighbours not heard from for `neighbour_age`, or no longer usable,
        leave the store (the flows follow): a later packet asks for them again."""
        while True:
            await asyncio.sleep(sweep_interval(self.neighbours.age))
            try:
                n = await asyncio.to_thread(self.neighbours.age_out)
                if n:
                    log.info("%d learned neighbour(s) aged out", n)
                await self.probe_neighbours()
            except Exception:
                log.exception("neighbour aging")

    async def probe_neighbours(self) -> int:
        """Ask again for the learned neighbours half their age old (`Neighbours.probes`),
        each from the first connected chassis it may leave from; how many were sent."""
        by_chassis = {s.chassis: s for s in self.sessions.values() if s.chassis}
        sent = 0
        for where, frame, acts in self.neighbours.probes(self.nb.state()):
            sess = next((by_chassis[c] for c in where if c in by_chassis), None)
            if sess is not None:
                await sess.southbound.packet_out(
                    ofp.OFPP_CONTROLLER, frame, out_port=None, actions=(*ANSWER, *acts)
                )
                sent += 1
        return sent

    async def _poller(self) -> None:
        """Writers in other processes do not call our subscribers: notice their revisions."""
        while True:
            rev = await asyncio.to_thread(self.store.revision)
            if rev != self._seen_revision:
                self._seen_revision = rev
                self.kick()
            await asyncio.sleep(POLL if self.scope is None else AGENT_POLL)

    def _ensure_dialers(self) -> None:
        state = self.nb.state()
        mine = self.scope_id(state)
        for ch in state.all("chassis"):
            if self.scope is not None and ch.id != mine:
                continue  # an agent keeps its own chassis' switch, none other
            if ch.endpoint and self.dial is None and ch.id not in self._dialing:
                target = parse_target(ch.endpoint)
                self._dialing[ch.id] = asyncio.create_task(self._dial(ch.name, target))
            if ch.switch == "ovs" and ch.ovsdb:
                if ch.id not in self._keepers:
                    ev = asyncio.Event()
                    self._keepers[ch.id] = (asyncio.create_task(self._keep_ovsdb(ch.id, ev)), ev)
                self._keepers[ch.id][1].set()

    def advertised(self, chassis: Chassis) -> str:
        """The OpenFlow address an Open vSwitch chassis is told to dial."""
        if self.of_advertise:
            return self.of_advertise
        local = (chassis.ovsdb or "").startswith("unix:")
        for kind, host, _ in self.listen:
            if kind == "punix" and local:
                return f"unix:{host}"  # a path works across network namespaces
        for (kind, host, _), srv in zip(self.listen, self.servers, strict=False):
            if kind == "ptcp" and srv.sockets:
                port = srv.sockets[0].getsockname()[1]
                return f"tcp:{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        raise LookupError("the controller listens nowhere: start it with --of-listen")

    def _ovs_bfd(self, chassis_id: str) -> Callable[[dict[int, str]], None]:
        """What an Open vSwitch chassis' BFD ports say (from its OVSDB's IDL thread) goes
        to `bfd.Reports` on the event loop, as a vnet switch's full report does."""
        loop = asyncio.get_running_loop()

        def received(states: dict[int, str]) -> None:
            loop.call_soon_threadsafe(self.bfd.received, chassis_id, states, True)

        return received

    async def _keep_ovsdb(self, chassis_id: str, wake: asyncio.Event) -> None:
        """Keep one Open vSwitch chassis' bridge and ports as the model says."""
        bridge: OvsdbBridge | None = None
        try:
            while True:
                wake.clear()
                state = self.nb.state()
                ch = state.get("chassis", chassis_id)
                if ch is None or ch.switch != "ovs" or not ch.ovsdb:
                    self._keepers.pop(chassis_id, None)
                    return
                if bridge is None or (bridge.remote, bridge.bridge) != (ch.ovsdb, ch.bridge):
                    if bridge is not None:
                        await asyncio.to_thread(bridge.close)
                    bridge = OvsdbBridge(ch.ovsdb, ch.bridge, on_bfd=self._ovs_bfd(chassis_id))
                ports = ovs_ports(state, ch)
                # a tunnel port per encapsulation of the chassis it may send to (it sends in
                # the receiver's); Open vSwitch has none for NVGRE
                kinds = {c.encap for c in state.all("chassis") if c.underlay} - {"nvgre"}
                tunnels = {k: ch.underlay for k in sorted(kinds)} if ch.underlay else {}
                try:
                    changes = await asyncio.to_thread(
                        bridge.ensure,
                        datapath_id=ch.datapath_id,
                        # a chassis the controller dials needs no controller of its own
                        controllers=[] if ch.endpoint else [self.advertised(ch)],
                        datapath_type=ch.datapath_type,
                        ports=ports,
                        tunnels=tunnels,
                        bfd=bfd_wants(state, ch.id),
                    )
                    self.ovsdb_status[chassis_id] = "ok"
                    for c in changes:
                        log.info("chassis %s: %s", ch.name, c)
                except (OvsdbError, LookupError) as e:
                    self.ovsdb_status[chassis_id] = str(e)
                    log.warning("chassis %s: OVSDB: %s", ch.name, e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), OVSDB_RETRY)
        finally:
            if bridge is not None:
                await asyncio.to_thread(bridge.close)

    async def migrate(self, ref: str, to: str, tenant: str | None = None) -> Port:
        """Bind a port to chassis `to` and return once the switches have the new flows.

        The new chassis' ports are read again first (its switch was told to expect
        the port), so it is bound there in the same pass; that chassis is synced
        first and the one the port left last (`_in_order`).  When this returns,
        frames for the port go to the new chassis -- held there until its cable
        arrives -- and the old one still passes what the workload sends.
        """
        obj = self.nb.migrate(ref, to, tenant)
        for s in self.sessions.values():
            if s.chassis == obj.chassis:  # type: ignore[attr-defined]
                s.ports_stale = True
        self.kick()
        with contextlib.suppress(TimeoutError):
            await self.wait_synced(MIGRATE_WAIT)
        return obj  # type: ignore[return-value]

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Until every session has the current model (tests, the lab)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rev = self.nb.state().revision
            if (
                self._lflows is not None
                and self._lflows[0] == rev
                and all(
                    s.installed is not None and not s.lock.locked() for s in self.sessions.values()
                )
            ):
                return
            self.kick()
            await asyncio.sleep(0.05)
        raise TimeoutError("switches did not converge")

    # -- seeing inside ---------------------------------------------------------------------------
    def session_for(self, chassis_ref: str) -> Session:
        state = self.nb.state()
        ch = state.find("chassis", chassis_ref)
        if ch is None:
            raise LookupError(f"no chassis {chassis_ref!r}")
        for s in self.sessions.values():
            if s.dpid == int(ch.datapath_id, 16):
                return s
        raise LookupError(f"chassis {ch.name!r}: its switch is not connected")

    def explain(self, f: Flow) -> str:
        """Provenance of an installed flow, from its cookie."""
        if not f.cookie:
            return "no cookie: not put there by the controller"
        state = self.nb.state()
        for lf in self.logical_flows(state):
            if lf.flow.cookie == f.cookie:
                return lf.flow.origin
        hi = f.cookie >> 32
        for kind in ("port", "network", "chassis"):
            for o in state.all(kind):
                if zlib.crc32(o.id.encode()) == hi:
                    return f"{kind} {o.name} ({o.id}), a rule the model no longer makes"
        return f"cookie {f.cookie:#x}: no model object made it"

    async def drift(self, chassis_ref: str, repair: bool = False) -> list[Drift]:
        sess = self.session_for(chassis_ref)
        async with sess.lock:
            state = self.nb.state()
            sess.ofports = await sess.southbound.ports()
            want = self.desired(state, sess) or Desired()
            have = await read_state(sess.southbound)
            found = drift(want.flows, have.flows, self.explain)
            mods = diff(want, have)
            if repair and mods:
                await apply(sess.southbound, mods)
                self.flow_mods_total += len(mods)
                sess.installed = want
        return found

    def preview(self, diffs: Sequence[Diff]) -> dict[str, Any]:
        """Per chassis, the flow-mods planned changes would send (a dry run)."""
        state = self.nb.state().apply(d.change() for d in diffs)
        lflows = Compiler().compile(state)  # a scratch compiler: the live memo stays as it is
        out: dict[str, Any] = {}
        for ch in state.all("chassis"):
            sess = next(
                (s for s in self.sessions.values() if f"{s.dpid:016x}" == ch.datapath_id), None
            )
            if sess is None or sess.installed is None:
                out[ch.name] = {"connected": False, "flow_mods": []}
                continue
            want = Desired(localize(lflows, state, ch, sess.ofports))
            mods = diff(want, sess.installed)
            out[ch.name] = {"connected": True, "flow_mods": [_text(m) for m in mods]}
        return out

    def trace(
        self,
        port_ref: str | None,
        packet: str,
        tenant: str | None = None,
        from_outside: str | None = None,
        chassis: str | None = None,
    ) -> PathTrace:
        """A packet through the flows of every chassis it reaches, with provenance
        (`controller.trace`): from a port's workload, or with `from_outside` (an
        external network) from the physical network by that network's uplink on
        `chassis` (default: where the destination's MAC is answered for).

        `packet` is in flow syntax (`icmp,nw_dst=10.0.0.11`); what it leaves out is
        filled in as the sender would (`trace.port_start`, `trace.outside_start`).
        The external network is looked up in `tenant`, then among all tenants' (a
        provider's network serves other tenants' routers).
        """
        state = self.nb.state()
        lflows = self.logical_flows(state)
        built: dict[str, tuple[Any, dict[str, int]]] = {}

        def switch_of(ch: Chassis) -> tuple[Any, dict[str, int]]:
            if ch.id not in built:
                sess = next((s for s in self.sessions.values() if s.chassis == ch.id), None)
                ofports = dict(sess.ofports) if sess is not None else model_ofports(state, ch)
                flows = localize(lflows, state, ch, ofports, self._bindings)
                groups = local_groups(lflows, state, ch, ofports)
                built[ch.id] = (scratch_switch(ch.name, flows, groups), ofports)
            return built[ch.id]

        def ofports_of(ch: Chassis) -> dict[str, int]:
            return switch_of(ch)[1]

        if from_outside is not None:
            if port_ref is not None:
                raise ModelError(
                    "invalid", ("port",), "a trace comes from a port or from outside, not both"
                )
            try:
                net = self._ref("network", from_outside, tenant, "from_outside")
            except ModelError:
                if tenant is None:
                    raise
                net = self._ref("network", from_outside, None, "from_outside")
            ch = self._ref("chassis", chassis, None, "chassis") if chassis else None
            assert isinstance(net, Network) and isinstance(ch, Chassis | None)
            start = outside_start(state, net, ch, packet, ofports_of)
        elif port_ref is None:
            raise ModelError("invalid", ("port",), "a trace needs a port (or from_outside)")
        elif chassis is not None:
            raise ModelError("invalid", ("chassis",), "a port's trace starts on its chassis")
        else:
            port = self.nb.get("port", port_ref, tenant)
            assert isinstance(port, Port)
            start = port_start(state, port, packet, ofports_of)
        return trace_path(state, start, switch_of)

    def _ref(self, kind: str, ref: str, tenant: str | None, loc: str) -> Any:
        """`nb.get`, its refusal naming the request's field `loc`."""
        try:
            return self.nb.get(kind, ref, tenant)
        except ModelError as e:
            raise ModelError(e.status, (loc,), e.message) from None

    def port_status(self, port: Port) -> str:
        """`up` once the port's flows are installed on its chassis, else `down`: as this
        process' session to the chassis' switch says, or, when it has none, as the
        chassis' agent reports (`chassis_status`)."""
        if not port.admin_up or port.chassis is None:
            return "down"
        mine = [s for s in self.sessions.values() if s.chassis == port.chassis]
        for s in mine:
            if s.installed is not None and port.iface in s.ofports:
                return "up"
        if not mine:
            rep = self.nb.state().get("chassis_status", port.chassis)
            if rep is not None and rep.switch and port.id in rep.ports_up:
                return "up"
        return "down"

    # -- an agent: one chassis -------------------------------------------------------------
    def scope_id(self, state: State) -> str | None:
        """The id of the agent's chassis (None: not an agent, or no such chassis yet)."""
        if self.scope is None:
            return None
        ch = state.find("chassis", self.scope)
        return ch.id if ch is not None else None

    async def _report_chassis(self) -> None:
        """An agent's report of its chassis into the store, when it changed: whether it
        holds the switch's session, the ports whose flows it installed."""
        state = self.nb.state()
        mine = self.scope_id(state)
        if mine is None:
            return
        sess = [s for s in self.sessions.values() if s.chassis == mine and s.installed]
        up = [p.id for p in state.all("port") if p.chassis == mine and p.admin_up
              and any(p.iface in s.ofports for s in sess)]  # fmt: skip
        try:
            await asyncio.to_thread(self.nb.report_chassis, mine, bool(sess), up)
        except ModelError as e:  # a port deleted meanwhile: the next pass says it again
            log.info("chassis %s: report not stored: %s", self.scope, e)
            self.kick()

    def stats(self) -> dict[str, Any]:
        return {
            "revision": self.nb.state().revision,
            "flow_mods": self.flow_mods_total,
            "switches": [
                {
                    "datapath_id": f"{s.dpid:016x}",
                    "chassis": s.chassis,
                    "ports": len(s.ofports),
                    "flows": len(s.installed.flows) if s.installed else 0,
                }
                for s in self.sessions.values()
            ],
            "punts": self.punter.stats(),
            "connections_cut": self.cutter.total,
        }
