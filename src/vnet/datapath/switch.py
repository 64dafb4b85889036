"""The vnet switch datapath: ports, the pipeline, and what happens to each frame.

`Switch.receive` is the per-packet path, the same for every port kind:

1. port security on ingress (`portsec.ingress_check`), counted by reason;
2. flow key (`flowkey.extract`), then the pipeline's cached decision
   (`Pipeline.decide`: exact-match cache in front of the tuple-space
   classifier), with `normal` answered by this switch (MAC learning, VLANs);
3. side operations (MAC learning) replayed, rules, tables (a miss is a
   lookup too) and groups charged;
4. `_forward`: a decision that only outputs (`Decision.plain`) sends the
   frame as received; anything else goes through `odp.apply` (rewrites,
   VLAN push/pop, clones, meters, and `ct` -- tracking, NAT, recirculation
   -- by `_ct` where it stands) first; a fragment at `ct` is held by `ipf`
   until its datagram is whole, which is tracked once, and then each
   fragment goes on with the datagram's state (`_release_fragments`);
5. every copy leaves through `_output`: `_egress` decides whether the port
   may take it (it exists, is live or held for, and port security lets it
   receive that destination -- no promiscuous mode), `_send` fits the
   virtio-net header to the device and queues it on the port, and `_flush`
   hands each port's queue to its device in one call at the end of the batch
   and counts what the device refused.  There is no other way out.

In front of all that sits a per-port cache keyed by the frame's signature
(`flowkey.signature`: the header bytes the flow key is made of, for plain
IPv4 TCP/UDP/ICMP), as Open vSwitch's datapath flow table sits in front of
its slow path.  An entry holds the full path's whole decision for the first
frame of the signature (rewrites, VLAN tags, groups, meters and packet-ins
included) with the flow key it was made for -- the same signature means the
same key, so the same rewrites at the same offsets -- and, for a plain
output, `_egress`'s answer per port.  `receive_batch` queues every later
frame of that signature on its entry and, at the end of the batch (or
before a frame that needs the full path), `_drain` forwards each entry's
frames through the same `_forward`/`_send` as the full path, entry after
entry.  Frames of one flow keep their order; frames of different flows in
one batch may leave grouped by port, as in Open vSwitch's userspace
datapath.  Any change that could alter a decision or an egress answer
(flows, groups, ports, liveness, MAC table, a port's locked MAC,
controllers) bumps the pipeline's version, and one version check empties
the pipeline's decision cache and these signature caches together.

What a cached frame owes its rules, tables and groups (packets, bytes, last
use) and the MAC table (the source's age) waits in its entry until `settle`,
as Open vSwitch's datapath flows keep their statistics until a revalidator
pushes them: one charge per entry however many batches it served, instead
of one per entry per batch -- with a thousand flows each batch is a
thousand different entries.  Readers cannot forget it: the pipeline and the
MAC table are reached through the `pipeline` and `macs` properties, which
settle first (so do `tick`, `stats` and the full path), and the per-packet
code uses the private attributes behind them.  Charges commute, a rule's
last use only moves forward, and a late MAC refresh only refreshes -- never
relearns or moves an address a port change flushed -- so nothing else needs
to settle first.

While the switch's BFD sessions say it is isolated (`bfd.Monitor.isolated`),
the flows of the controller's stand-down set (`set_stand_down`, by cookie:
those that make this chassis a router's active gateway) match nothing
(`Pipeline.set_isolated`); they match again when a session is up.

Nothing is lost silently: a frame the switch did not deliver anywhere is in
`drops` under its reason (`no_match`, `port_security`..., `meter`,
`tx_queue_full`, `port_down`, `malformed`, `no_controller`).

Fail modes are Open vSwitch's: `standalone` installs the default
`priority=0 actions=NORMAL` flow when no controller is configured and falls
back to learning (fail-open) while configured controllers are all
unreachable; `secure` only ever forwards on installed flows.

The switch does no I/O itself beyond calling its ports' devices; the event
loop (`runner.py`) feeds it and the OpenFlow agent (`vnet.ofp`) configures it.
Time is passed in.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..ids import datapath_id
from ..packet import encap
from ..packet import flowkey as fk
from ..packet import nat as natpkt
from ..packet.errors import DecodeError
from ..packet.ethernet import header_len
from ..packet.geneve import GeneveOption
from ..pipeline import odp
from ..pipeline.actions import OFPP_LOCAL, Action, Ct, Nat, Output, RegLoad, SetField
from ..pipeline.context import XContext, packet_len
from ..pipeline.engine import Decision, Pipeline
from ..pipeline.errors import ErrorKind, PipelineError
from ..pipeline.fields import BY_INDEX
from ..pipeline.flow import Flow, FlowMod, FlowModCommand, Instructions, Rule
from ..pipeline.groups import GroupMod, GroupModCommand
from ..pipeline.match import Match
from ..pipeline.trace import Tracer
from . import ftp, offload, rewrite
from .bfd import Monitor
from .conntrack import NEW, TRK, CtResult, Packet, Tracker
from .ctnat import nat_range
from .ipf import Ipf, Refused
from .mac_table import DEFAULT_AGING, MacTable
from .meters import MeterConfig, MeterTable
from .normal import normal
from .port import Device, Frame, Port, PortConfig, send_all
from .portsec import egress_allowed, ingress_check

__all__ = ["FailMode", "PacketIn", "Switch", "SwitchError"]

OFPP_MAX = 0xFFFFFF00
# a `wait` port holds frames for its device this long, at most this many (a migrating
# workload's cable is in flight for tens of milliseconds)
HOLD_TIME = 1.0
HOLD_FRAMES = 256
# the inner flow's fields behind a tunnel's entropy (UDP source port, NVGRE FlowID)
_FLOW = operator.itemgetter(
    fk.ETH_SRC, fk.ETH_DST, fk.IPV4_SRC, fk.IPV4_DST, fk.IPV6_SRC, fk.IPV6_DST,
    fk.IP_PROTO, fk.TP_SRC, fk.TP_DST,
)  # fmt: skip
MIN_FRAME = 14
MAX_RECIRCULATIONS = 8  # ct(table=) passes one packet may take
HOLD = "hold"  # `_egress`: the port's device is on the way; its frames wait on it
log = logging.getLogger("vnet.switch")


class _Entry:
    """The full path's decision for one signature on one ingress port, with the key
    it was made for (rewrites patch at its offsets) and, for a plain output, where
    each copy goes (`Switch._egress`, decided once)."""

    __slots__ = (
        "ct", "d", "direct", "key", "nbytes", "packets", "plan", "queue", "rewrite", "tracks",
        "used",
    )  # fmt: skip

    def __init__(
        self,
        d: Decision,
        key: tuple[int, ...],
        plan: tuple[tuple[Port | None, str | None], ...],
        direct: tuple[Port, ...] | None,
    ) -> None:
        self.d = d
        self.key = key
        self.plan = plan
        # the plan's ports when `_send` would queue the frames on them as they are
        # (none refused, no tunnel, the ingress device's virtio-net header wanted)
        self.direct = direct
        self.queue: list[Frame] = []  # this batch's frames, forwarded together
        self.packets = 0  # frames served since the last `settle`, their bytes and last time
        self.nbytes = 0
        self.used = 0.0
        # the decision reaches the tracker (a `ct` anywhere in it): its frames are
        # tracked in the order they came, and after a `ct`, one at a time
        self.tracks = False
        self.ct: _CtStep | None = None  # the decision begins with a `ct`: see `_CtStep`
        # the decision rewrites the Ethernet addresses and TTL, then outputs (a router's):
        # each frame is rewritten by slicing, and they leave in one batch (`rewrite`)
        self.rewrite: rewrite.Rewrite | None = None


class _CtStep:
    """A cached decision that begins with a `ct` of the frame as it came in: each
    frame is tracked (the tracker's lookup and update, every time), and what
    follows is cached too.  After `ct(table=N)`, what the recirculation
    decides, per answer of the tracker -- `next`, keyed by the answer (it
    holds the ct fields: state, zone, mark, label, original tuple), as Open
    vSwitch's megaflows after a recirculation are keyed by the recirculation
    point and the ct fields they match.  After a `ct` without `table=`, the
    outputs that follow it (`tail`: the same whatever the tracker says)."""

    __slots__ = ("act", "args", "at", "hot", "next", "pkt", "rest", "resumable", "tail", "zone")

    def __init__(
        self,
        act: Ct,
        at: tuple[int, ...],
        zone: int,
        pkt: Packet | None,
        rest: Sequence[odp.Op] = (),
        tail: _Entry | None = None,
    ) -> None:
        self.act = act
        self.at = at  # the flow key at the `ct`: what the tracker reads
        self.zone = zone
        self.pkt = pkt  # the tracker's reading of the key (TCP and UDP: one per signature)
        self.next: dict[CtResult, _Entry] = {}
        self.rest = rest  # without `table=`: the actions after the `ct`, and their entry
        self.tail = tail
        mark, label = _ct_exec(act)
        nat = None if act.nat is None else nat_range(act.nat)
        # what `Tracker.process` is asked after the frame, its key, zone and the time
        self.args = (act.commit, mark, label, nat, act.force, act.alg, pkt)
        # a `ct` that only reads: the tracker's standing answer for the last frame
        # (`Tracker.resume`) carries over to the next batch's first frames
        self.resumable = not (act.commit or mark or label or nat or act.force or act.alg)
        self.hot: tuple[Any, CtResult] | None = None


FAST_ENTRIES = 8192  # per ingress port


def _refuse_unsupported(actions: Iterable[Action]) -> None:
    """What this switch cannot run, or Open vSwitch would refuse, named before
    anything changes."""
    for a in actions:
        if isinstance(a, Nat):
            raise PipelineError(ErrorKind.BAD_ARGUMENT, "nat: only inside ct()")
        if not isinstance(a, Ct):
            continue
        if a.alg and a.alg != ftp.FTP_PORT:
            raise PipelineError(
                ErrorKind.UNSUPPORTED_ACTION, f"ct: alg={a.alg}: no such helper in this switch"
            )
        if a.force and not a.commit:
            raise PipelineError(ErrorKind.BAD_ARGUMENT, "ct: force requires commit")
        if a.nat is not None:
            try:
                nat_range(a.nat)
            except ValueError as e:
                raise PipelineError(ErrorKind.BAD_ARGUMENT, str(e)) from None


def _ct_fields(r: CtResult) -> tuple[int, ...]:
    """The key's ct slots (ct_state ... ct_tp_dst) as the tracker's answer sets them."""
    o = r.orig
    if o is None:
        return (r.state, r.zone, r.mark, r.label, 0, 0, 0, 0, 0, 0, 0)
    v4 = o[1] == 4
    return (
        r.state, r.zone, r.mark, r.label,
        o[3] if v4 else 0, o[4] if v4 else 0, 0 if v4 else o[3], 0 if v4 else o[4],
        o[2], o[5], o[6],
    )  # fmt: skip


class _Held(NamedTuple):
    """A fragment `ipf` holds at a `ct`: what it needs to go on once its datagram is
    whole -- its virtio-net header, flow key, fields at the `ct`, and (without
    `table=`) the actions after the `ct`."""

    hdr: bytes
    key: Sequence[int]
    fields: tuple[int, ...]
    rest: Sequence[odp.Op]


def _after(ops: Sequence[odp.Op], target: odp.Op) -> Sequence[odp.Op] | None:
    """The actions after `target` (found by identity) in its own list -- inside a
    clone, the clone's: what follows the clone ran when the packet stopped."""
    for i, op in enumerate(ops):
        if op is target:
            return ops[i + 1 :]
        if op[0] == "clone":
            r = _after(op[1], target)
            if r is not None:
                return r
    return None


def _tracks(ops: Sequence[odp.Op]) -> bool:
    """Whether `ops` reach the tracker: a `ct`, also inside a clone (a group's bucket)."""
    return any(op[0] == "ct" or (op[0] == "clone" and _tracks(op[1])) for op in ops)


def _ct_write(a: Action) -> tuple[int, int]:
    """(value, mask) an exec() action writes to ct_mark or ct_label."""
    if isinstance(a, SetField):
        full = (1 << 128) - 1
        return a.value, full if a.mask is None else a.mask
    assert isinstance(a, RegLoad)
    return a.value << a.ofs, ((1 << a.nbits) - 1) << a.ofs


def _ct_exec(ct: Ct) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """What the `exec` of `ct` writes: (value, mask) for ct_mark and for ct_label."""
    mark = label = None
    for a in ct.exec_:
        v, m = _ct_write(a)
        if a.slot == fk.CT_MARK:  # type: ignore[attr-defined]
            mark = (v, m)
        else:
            label = (v, m)
    return mark, label


class FailMode:
    STANDALONE = "standalone"
    SECURE = "secure"


class SwitchError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PacketIn:
    reason: str  # no_match | action | invalid_ttl
    table_id: int
    cookie: int
    key: tuple[int, ...]
    frame: bytes
    total_len: int
    max_len: int


NORMAL_FLOW = Flow(
    match=Match(),
    instructions=Instructions(apply=(Output(0xFFFFFFFA),)),
    priority=0,
    origin="default flow (fail-mode standalone, no controller)",
)


class Switch:
    def __init__(
        self,
        name: str,
        dpid: int | None = None,
        fail_mode: str = FailMode.STANDALONE,
        mac_aging: float = DEFAULT_AGING,
        n_tables: int = 254,
        now: float = 0.0,
    ) -> None:
        if fail_mode not in (FailMode.STANDALONE, FailMode.SECURE):
            raise SwitchError(f"fail-mode: expected standalone or secure, got {fail_mode!r}")
        self.name = name
        # stable across restarts (str hashes are salted per process): controllers know a switch by it
        self.dpid = dpid if dpid is not None else datapath_id(name)
        self.fail_mode = fail_mode
        self._pipeline = Pipeline(n_tables)
        self.ports: dict[int, Port] = {}
        self._macs = MacTable(mac_aging, port_limit=self._mac_limit)
        self.meters = MeterTable()
        self.drops: dict[str, int] = {}
        self.controllers_configured = 0
        self.controllers_connected = 0
        self.on_packet_in: Callable[[PacketIn], None] | None = None
        self.on_port_status: Callable[[str, Port], None] | None = None
        self.now = now
        self.rx_packets = 0
        self._standalone_flow = False
        self._dropped = False  # the packet in hand's drop is counted already
        # frames `_send` queued per port, and their bytes, until `_flush`
        self._tx: dict[Port, tuple[list[Frame], list[int]]] = {}
        self.fast = True  # the signature cache in front of the full path (off: every frame parsed)
        self.fast_hits = 0
        self._unsettled: list[_Entry] = []  # entries whose charges wait for `settle`
        self._ident = 0  # outer IPv4 identification of tunnel packets
        self.conntrack = Tracker()
        self._recirculations = 0  # how deep the packet in hand is in ct(table=) passes
        # the packet in hand: its checksum left to the device (NEEDS_CSUM), and what a
        # `ct` earlier in its action list said of it (ct_state ... ct_tp_dst)
        self._csum_partial = False
        self._ct_md: tuple[int, ...] | None = None
        self._hdr = b""  # the packet in hand's virtio-net header and action list
        self._ops: Sequence[odp.Op] = ()
        # fragments reassembled for the tracker, held until their datagram is whole
        self.ipf: Ipf[_Held] = Ipf()
        # datagrams made whole by the packet in hand: (ct, its fields, fragments) to go on
        self._released: list[tuple[Ct, tuple[int, ...], list[tuple[_Held, bytes]]]] = []
        self.too_big_sent = 0  # ICMP "too big" answers to oversize frames for a tunnel
        # BFD sessions to peer chassis over the tunnel ports (a locally administered MAC)
        self.bfd = Monitor(0x02 << 40 | (self.dpid & 0xFFFFFFFFFF))
        self.bfd.on_isolated = self._isolated
        self._sync_default_flow()

    # -- configuration ---------------------------------------------------------------
    def _mac_limit(self, port_no: int) -> int:
        p = self.ports.get(port_no)
        return p.config.mac_limit if p is not None else 0

    def _sync_default_flow(self) -> None:
        want = self.fail_mode == FailMode.STANDALONE and not self.controllers_configured
        if want and not self._standalone_flow:
            self._pipeline.add_flows([NORMAL_FLOW], self.now)
        elif not want and self._standalone_flow:
            self._pipeline.commit([FlowMod(FlowModCommand.DELETE_STRICT, NORMAL_FLOW)])
        self._standalone_flow = want

    def set_controllers(self, configured: int) -> None:
        self.controllers_configured = configured
        self._sync_default_flow()

    @property
    def fail_open(self) -> bool:
        """Standalone with controllers configured, none reachable: act as a learning switch."""
        return (
            self.fail_mode == FailMode.STANDALONE
            and self.controllers_configured > 0
            and self.controllers_connected == 0
        )

    def controller_connected(self, delta: int) -> None:
        self.controllers_connected = max(0, self.controllers_connected + delta)
        self._pipeline.invalidate()

    def port_by_name(self, name: str) -> Port | None:
        for p in self.ports.values():
            if p.name == name:
                return p
        return None

    def add_port(self, config: PortConfig, device: Device) -> Port:
        if self.port_by_name(config.name) is not None:
            raise SwitchError(f"port {config.name!r} already exists on {self.name}")
        if config.kind == "internal":
            no = OFPP_LOCAL
        elif config.ofport is not None:
            no = config.ofport
            if not 1 <= no < OFPP_MAX or no in self.ports:
                raise SwitchError(f"ofport {no} is in use or out of range")
        else:
            no = next(i for i in range(1, OFPP_MAX) if i not in self.ports)
        port = Port(no, config, device, created=self.now, tunnel=config.tunnel)
        port.locked_mac = config.mac
        port.link_up = device.link_up()
        self.ports[no] = port
        self._pipeline.invalidate()
        if self.on_port_status:
            self.on_port_status("add", port)
        return port

    def del_port(self, name: str) -> Port:
        port = self.port_by_name(name)
        if port is None:
            raise SwitchError(f"no port {name!r} on {self.name}")
        del self.ports[port.port_no]
        self.bfd.forget_port(name)
        self._macs.flush(port.port_no)
        self._pipeline.invalidate()
        port.device.close()
        if self.on_port_status:
            self.on_port_status("delete", port)
        return port

    def set_link(self, port: Port, up: bool) -> None:
        if port.link_up == up:
            return
        port.link_up = up
        if not up:
            self._macs.flush(port.port_no)
        self._pipeline.invalidate()
        if self.on_port_status:
            self.on_port_status("modify", port)
        if up and port.held:
            self._release(port)

    def _release(self, port: Port) -> None:
        """A `wait` port's device arrived: send what was held for it, if still fresh."""
        held, port.held = port.held, []
        for t, hdr, frame, dst in held:
            if self.now - t > HOLD_TIME:
                port.stats.tx_dropped += 1
                self.drop("held_too_long")
            else:
                self._output(port.port_no, [(hdr, frame)], dst, ())
        self._flush()

    def set_admin(self, port: Port, up: bool) -> None:
        if port.admin_up != up:
            port.admin_up = up
            self._pipeline.invalidate()
            if self.on_port_status:
                self.on_port_status("modify", port)

    def set_stand_down(self, cookies: Iterable[int]) -> None:
        """The cookies of the flows that match nothing while the switch is isolated."""
        self._pipeline.set_stand_down(cookies)

    def _isolated(self, isolated: bool) -> None:
        self._pipeline.set_isolated(isolated)
        if isolated:
            log.warning("%s: isolated (every BFD session down, one was up): %d flows stand "
                        "down", self.name, len(self._pipeline.asleep))  # fmt: skip
        else:
            log.warning("%s: no longer isolated (a BFD session is up): the flows that stood "
                        "down match again", self.name)  # fmt: skip

    def commit(self, mods: Sequence[FlowMod | GroupMod]) -> list[Rule]:
        """Apply flow and group mods atomically (PipelineError: nothing changed)."""
        for mod in mods:
            if isinstance(mod, FlowMod):
                if mod.command in (FlowModCommand.DELETE, FlowModCommand.DELETE_STRICT):
                    continue
                ins = mod.flow.instructions
                _refuse_unsupported((*ins.apply, *ins.write))
            elif mod.command != GroupModCommand.DELETE:
                for b in mod.group.buckets:
                    _refuse_unsupported(b.actions)
        return self.pipeline.commit(mods, self.now)

    def meter_mod(self, cfg: MeterConfig, command: str) -> None:
        self.meters.apply(cfg, command, self.now)

    # -- Hooks (called by the pipeline during translation) ----------------------------
    def normal(self, x: XContext) -> None:
        normal(x, self.ports, self.macs)

    def flood_ports(self, in_port: int, include_no_flood: bool) -> list[int]:
        return [
            no
            for no, p in self.ports.items()
            if no != in_port and p.live and (include_no_flood or not p.config.no_flood)
        ]

    def port_live(self, port: int) -> bool:
        p = self.ports.get(port)
        return p is not None and p.live

    # -- the datapath ----------------------------------------------------------------
    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def receive_batch(self, port: Port, frames: Iterable[tuple[bytes, bytes]], now: float) -> None:
        """Frames in from `port`: cached signatures queued on their entries, the rest the
        full way; everything leaves through `_output`, sent at `_flush`."""
        self.now = now
        if not port.live or not self.fast:
            for hdr, frame in frames:
                self._receive(port, hdr, frame)
            self._flush()
            return
        pipeline = self._pipeline
        cache = pipeline.signatures(port.port_no)
        touched: list[_Entry] = []
        sig_of = fk.signature
        tracking: _Entry | None = None  # the touched entry whose frames the tracker will see
        for f in frames:
            sig = sig_of(f[1])
            e = cache.get(sig) if sig is not None else None
            if (
                e is not None
                and e.d.lengths
                and not e.d.fits(packet_len(offload.wire_len(*f), e.key))
            ):
                e = None  # made for a frame on the other side of a check_pkt_larger
            if e is None:
                if touched:  # what came before goes first
                    self._drain(port, touched)
                    touched = []
                    tracking = None
                self._receive(port, f[0], f[1], None, sig)
                cache = pipeline.signatures(port.port_no)  # emptied if the version moved
                continue
            if e.tracks and e is not tracking:
                # the tracker sees frames in the order they came: another signature's
                # frames it is to see go first
                if tracking is not None:
                    self._drain(port, touched)
                    touched = []
                tracking = e
            q = e.queue
            if not q:
                touched.append(e)
            q.append(f)
        if touched:
            self._drain(port, touched)
        self._flush()

    def _remember(self, port: Port, sig: fk.Signature, d: Decision, key: tuple[int, ...]) -> None:
        """Cache the full path's decision for `sig`: later frames of it skip the flow
        key, the lookup and (for a plain output) the egress checks."""
        e = self._entry(port, d, key)
        if e is None:
            return
        cache = self._pipeline.signatures(port.port_no)
        if len(cache) >= FAST_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[sig] = e

    def _entry(self, port: Port, d: Decision, key: tuple[int, ...]) -> _Entry | None:
        """An entry for `d`, made for `key` on frames from `port` (None: not cacheable)."""
        if not d.cacheable:
            return None
        plan: tuple[tuple[Port | None, str | None], ...] = ()
        routed = rewrite.plan(d.odp, key) if d.plain is None else None
        outs = d.plain if routed is None else routed.outs
        if outs is not None:
            dst = key[fk.ETH_DST] if routed is None else int.from_bytes(routed.eth[:6], "big")
            plan = tuple(self._egress(p, dst) for p in outs)
            if any(way[1] == HOLD for way in plan):
                return None  # a held frame waits on its port, for as long as there is room
        direct: tuple[Port, ...] | None = None
        vnet = port.device.vnet_hdr
        if plan and all(
            out is not None and why is None and not out.tunnel and out.device.vnet_hdr == vnet
            for out, why in plan
        ):
            direct = tuple(out for out, _ in plan if out is not None)
        e = _Entry(d, key, plan, direct)
        e.rewrite = routed
        if d.plain is None and _tracks(d.odp):
            e.tracks = True
            if d.odp[0][0] == "ct" and not key[fk.IP_FRAG]:
                e.ct = self._ct_step(port, d, key)
        return e

    def _ct_step(self, port: Port, d: Decision, key: tuple[int, ...]) -> _CtStep | None:
        """The `_CtStep` of a decision that begins with a `ct` (None: the full path's):
        `ct(table=)` alone, or a `ct` followed by outputs only."""
        _, act, at, zone = d.odp[0]
        pkt = self.conntrack.reading(at, zone)
        if act.table is not None:
            return _CtStep(act, at, zone, pkt) if len(d.odp) == 1 else None
        rest = d.odp[1:]
        if not all(op[0] == "output" and len(op) == 2 for op in rest):
            return None
        # the outputs, charged to nothing: the entry that holds the step charges `d`
        after = d._replace(
            odp=rest, rules=(), tables=(), groups=(), side=(), plain=tuple(op[1] for op in rest)
        )
        tail = self._entry(port, after, key)
        return None if tail is None else _CtStep(act, at, zone, pkt, rest, tail)

    def _drain(self, port: Port, touched: list[_Entry]) -> None:
        """Forward the entries' queued frames, entry after entry; charge the ingress
        port now, and what they owe rules, tables, groups and MAC ages at `settle`."""
        total, total_bytes = self._serve(port, touched)
        st = port.stats
        st.rx_packets += total
        st.rx_bytes += total_bytes
        self.rx_packets += total
        self.fast_hits += total
        self._pipeline.cache_hits += total

    def _serve(self, port: Port, touched: list[_Entry]) -> tuple[int, int]:
        """`_drain`'s forwarding, also of what a recirculation's cached decisions
        took (`_track`): the frames and bytes served."""
        now = self.now
        unsettled = self._unsettled
        total = total_bytes = 0
        send = self._send
        txs = self._tx
        for e in touched:
            q = e.queue
            e.queue = []
            n = len(q)
            nbytes = len(q[0][1]) if n == 1 else sum([len(f[1]) for f in q])
            if not e.packets:
                unsettled.append(e)
            e.packets += n
            e.nbytes += nbytes
            e.used = now
            total += n
            total_bytes += nbytes
            if e.rewrite is not None:  # a router's rewrite: the frames are new, their size not
                q = rewrite.apply_batch(e.rewrite, q)
            direct = e.direct
            if direct is not None:  # what `_send` does for these ports, without the checks
                one = len(direct) == 1
                for out in direct:
                    tx = txs.get(out)
                    if tx is None:
                        txs[out] = (q if one else q.copy(), [nbytes])
                    else:
                        tx[0].extend(q)
                        tx[1][0] += nbytes
                continue
            d = e.d
            if e.ct is not None:
                self._track(port, e, e.ct, q)
            elif e.rewrite is not None:
                for way in e.plan:
                    send(way, q, nbytes, e.key)
            elif d.plain is None:
                self._forward(d, e.key, q)
            elif not e.plan:
                self.drop(d.drop_reason or "no_output", n)
            else:
                for way in e.plan:
                    send(way, q, nbytes, e.key)
        return total, total_bytes

    def _track(self, port: Port, e: _Entry, step: _CtStep, q: list[Frame]) -> None:
        """Frames of a cached decision that begins with a `ct`: each tracked as the
        full path's `_ct` tracks it, then sent where the cached rest sends it
        (`_CtStep`), made by the full path for the first frame that got that
        answer of the tracker.  A frame whose answer translates or edits it
        takes the full path from the tracker on; whatever is queued goes first,
        so a flow keeps its order.  After a frame that got its connection's
        standing answer, the tracker `follow`s the run of frames behind it
        (same headers, so the same answer) with their window checks alone --
        unless what the answer leads to reaches the tracker again (a `ct`
        anywhere in it: `_Entry.tracks`): then each frame goes through it at
        once (`_again`), before the next frame is tracked, as on the full path,
        where a commit there may create the connection or change the answer
        the next frame gets."""
        act, at, zone, tail, args = step.act, step.at, step.zone, step.tail, step.args
        tracker = self.conntrack
        process, follow = tracker.process, tracker.follow
        pipeline = self._pipeline
        version = pipeline.version
        nxt = step.next
        meta = at[fk.META_SLOTS]
        now = self.now
        touched: list[_Entry] = []
        last: CtResult | None = None
        last_sub: _Entry | None = None
        sub: _Entry | None
        i, n = 0, len(q)
        hot = step.hot
        if hot is not None:  # the last batch's standing answer, if it still holds
            r = hot[1]
            sub = tail if tail is not None else nxt.get(r)
            if sub is not None and not sub.tracks:
                i = tracker.resume(hot[0], r, q, at, now)
                if i:
                    last, last_sub = r, sub
                    if not sub.queue:
                        touched.append(sub)
                    sub.queue.extend(q[:i])
            elif sub is not None and tracker.resume(hot[0], r, q[:1], at, now):
                # the first frame alone: what follows tracks it again before the next
                i = 1
                last, last_sub = r, sub
                self._again(port, sub, q[0], tail is None)
        while i < n:
            f = q[i]
            i += 1
            hdr, frame = f
            r = process(frame, at, zone, now, *args)
            if step.resumable:
                held = tracker.hot
                step.hot = None if held is None else (held, r)
            if r.drop is not None:
                self.drop(r.drop)
                continue
            if r.rewrite is None and r.edit is None:
                if tail is not None:
                    sub = tail
                elif r is last:  # the tracker hands out one answer while it holds
                    sub = last_sub
                else:
                    sub = last_sub = nxt.get(r)
                    last = r
                if sub is not None and pipeline.version == version:
                    sq = sub.queue
                    if not sub.tracks:
                        if not sq:
                            touched.append(sub)
                        sq.append(f)
                        if i < n and tracker.hot is not None:  # the same answer for a run
                            k = follow(q, i, at, now)
                            if k:
                                sq.extend(q[i : i + k])
                                i += k
                        continue
                    # tracked again: now, so the tracker sees every frame's passes in order
                    if touched:
                        self._recirculated(port, touched, tail is None)
                        touched = []
                    self._again(port, sub, f, tail is None)
                    continue
            if touched:  # what came before goes first
                self._recirculated(port, touched, tail is None)
                touched = []
            self._csum_partial = bool(hdr) and bool(hdr[0] & offload.F_NEEDS_CSUM)
            ctf = _ct_fields(r)
            if tail is not None:  # translated or edited: the actions after the ct, on it
                buf = bytearray(frame)
                if r.rewrite is not None:
                    natpkt.rewrite(buf, at, r.rewrite, self._csum_partial)
                self._helper_edit(buf, at, r.edit)
                self._apply(step.rest, e.key, hdr, bytes(buf), None, ctf)
                continue
            op, data = self._forked(act, r, ctf, frame, at, meta)
            h = offload.shift(hdr, len(data) - len(frame) - op[3])
            got = self._recirculate(op, at, h, data)
            if got is None or op[3] or data is not frame or pipeline.version != version:
                continue
            sub = self._entry(port, *got)
            if sub is not None:
                nxt[r] = last_sub = sub
                last = r
        if touched:
            self._recirculated(port, touched, tail is None)

    def _again(self, port: Port, sub: _Entry, f: Frame, deeper: bool) -> None:
        """One frame through a cached decision after a `ct` that reaches the tracker
        again (`ct(table=)`, or a `ct` after outputs or rewrites): at once, with
        `_serve`'s charges, so the tracker sees this frame's later passes before
        the next frame's first, as on the full path -- a commit there may create
        the connection, or change the answer, the next frame gets."""
        if not sub.packets:
            self._unsettled.append(sub)
        sub.packets += 1
        sub.nbytes += len(f[1])
        sub.used = self.now
        self._recirculations += deeper
        try:
            if sub.ct is not None:
                self._track(port, sub, sub.ct, [f])
            else:
                self._forward(sub.d, sub.key, [f])
        finally:
            self._recirculations -= deeper

    def _recirculated(self, port: Port, touched: list[_Entry], deeper: bool) -> None:
        """The queued frames of cached decisions after a `ct`: one recirculation
        deeper (`deeper`), or the same pass's outputs."""
        if not deeper:
            self._serve(port, touched)
            return
        self._recirculations += 1
        try:
            self._serve(port, touched)
        finally:
            self._recirculations -= 1

    def settle(self) -> None:
        """Charge what cached frames owe since the last call: rules, tables and groups
        (packets, bytes, last use), and their sources' MAC ages (refreshed only).

        Every reader reaches the pipeline and the MAC table through the `pipeline`
        and `macs` properties, which call this first: nobody has to remember to."""
        pending = self._unsettled
        if not pending:
            return
        self._unsettled = []
        pipeline = self._pipeline
        refresh = self._macs.refresh
        for e in pending:
            d = e.d
            for op in d.side:
                refresh(op[1], op[2], op[3], e.used)
            if d.tables or d.groups:
                pipeline.account(d, e.nbytes, e.used, e.packets)
            e.packets = e.nbytes = 0

    @property
    def pipeline(self) -> Pipeline:
        """The flow tables and groups, with every counter settled."""
        self.settle()
        return self._pipeline

    @property
    def macs(self) -> MacTable:
        """The MAC learning table, with every age settled."""
        self.settle()
        return self._macs

    def receive_tunnel_batch(
        self, port: Port, packets: Iterable[tuple[int, bytes]], now: float
    ) -> None:
        """Underlay packets read by a tunnel port: (outer source, UDP payload or IPv4 packet)."""
        self.now = now
        kind = port.config.kind
        local = port.config.local_ip or 0
        for src, data in packets:
            try:
                d = (
                    encap.decap_gre(data)
                    if kind == "nvgre"
                    else encap.decap_udp(kind, src, local, data)
                )
            except DecodeError as e:
                port.stats.rx_packets += 1
                port.stats.rx_errors += 1
                self.drop(f"tunnel_{e.reason.label}")
                continue
            if d.key == 0 and self.bfd.take(port, d.src, d.inner, now):
                port.stats.rx_packets += 1  # BFD, taken before the pipeline
                continue
            info = fk.TunnelInfo(d.key, d.src, d.dst, options=d.options)
            self._receive(port, b"", d.inner, info)
        self._flush()

    def receive(
        self, port: Port, hdr: bytes, frame: bytes, tunnel: fk.TunnelInfo | None = None
    ) -> None:
        """One frame in from `port`: forwarded, or counted as a drop."""
        self._receive(port, hdr, frame, tunnel)
        self._flush()

    def _receive(
        self,
        port: Port,
        hdr: bytes,
        frame: bytes,
        tunnel: fk.TunnelInfo | None = None,
        sig: fk.Signature | None = None,
    ) -> None:
        st = port.stats
        st.rx_packets += 1
        st.rx_bytes += len(frame)
        self.rx_packets += 1
        if not port.live:
            st.rx_dropped += 1
            self.drop("port_down")
            return
        if len(frame) < MIN_FRAME:
            st.rx_errors += 1
            self.drop("malformed")
            return
        key = fk.extract(frame, port.port_no, tunnel)
        pipeline = self._pipeline
        version = pipeline.version
        if port.config.port_security:
            locked = port.locked_mac
            bad = ingress_check(port, key)
            if port.locked_mac != locked:
                pipeline.invalidate()  # what this port may send and receive changed
            if bad is not None:
                st.rx_dropped += 1
                port.drop(bad)
                self.drop(bad)
                return
        if self.fail_open:
            d = self._fail_open_decision(key)
        else:
            d = pipeline.decide(key, self, 0, packet_len(offload.wire_len(hdr, frame), key))
        self._execute(d, key, hdr, frame)
        if sig is not None and pipeline.version == version:  # nothing learned meanwhile
            self._remember(port, sig, d, key)

    def _fail_open_decision(self, key: tuple[int, ...]) -> Decision:
        return self._pipeline.execute(key, (Output(0xFFFFFFFA),), self)

    def _execute(self, d: Decision, key: tuple[int, ...], hdr: bytes, frame: bytes) -> None:
        """The full path's charges for one frame, then `_forward`."""
        self.settle()  # what the cache served comes first
        now = self.now
        if d.side:
            macs = self._macs
            for op in d.side:
                if macs.learn(op[1], op[2], op[3], now):
                    self._pipeline.invalidate()
        if d.tables or d.groups:  # a table miss is a lookup too
            self._pipeline.account(d, len(frame), now)
        self._forward(d, key, [(hdr, frame)])

    def _forward(self, d: Decision, key: tuple[int, ...], frames: list[Frame]) -> None:
        """Frames of one flow key leave as `d` says: the one way out of the pipeline,
        for the full path (one frame) and the signature cache (a batch's frames)."""
        plain = d.plain
        if plain is not None:
            if not plain:
                self.drop(d.drop_reason or "no_output", len(frames))
                return
            dst = key[fk.ETH_DST]
            for p in plain:
                self._output(p, frames, dst, key)
            return
        ops = d.odp
        for hdr, frame in frames:
            self._apply(ops, key, hdr, frame, d.drop_reason)

    def _apply(
        self,
        ops: Sequence[odp.Op],
        key: Sequence[int],
        hdr: bytes,
        frame: bytes,
        drop_reason: str | None,
        ct_md: tuple[int, ...] | None = None,
    ) -> None:
        """One frame through `ops`, and out; then the fragments its `ct` made whole."""
        self._dropped = False
        self._csum_partial = bool(hdr) and bool(hdr[0] & offload.F_NEEDS_CSUM)
        self._ct_md = ct_md
        self._hdr, self._ops = hdr, ops
        outs = odp.apply(frame, key, ops, self._meter, self._ct)
        if not outs and not self._dropped:  # a meter or ct drop is counted where it happens
            self.drop(drop_reason or "no_output")
        if outs:
            base = len(frame)
            for op, data in outs:
                kind = op[0]
                if kind == "grown":  # the payload, not the headers, changed length
                    base += op[1]
                elif kind == "output":
                    h = offload.shift(hdr, len(data) - base)
                    tun = op[2] if len(op) > 2 else None
                    dst = int.from_bytes(data[0:6], "big")
                    self._output(op[1], [(h, data)], dst, key, tun)
                elif kind == "controller":
                    self._packet_in(op, key, hdr, data)
                elif kind == "normal":
                    # `normal` reached the datapath unexpanded (packet-out to NORMAL)
                    self.drop("normal_unexpanded")
                elif kind == "recirc":
                    h = offload.shift(hdr, len(data) - base - (op[3] if len(op) > 3 else 0))
                    self._recirculate(op, key, h, data)
        if self._released:
            self._release_fragments()

    def _meter(self, meter_id: int, nbytes: int) -> bool:
        if self.meters.admit(meter_id, nbytes, self.now):
            return True
        self.drop("meter")
        self._dropped = True
        return False

    def _ct(self, op: odp.Op, buf: bytearray, key: Sequence[int]) -> tuple[odp.Op, bytes] | bool:
        """The `ct` action where it stands in the action list (`odp.apply` calls it):
        track the packet, as it is there, in its zone.  Without `table=` its NAT
        translates the packet in place, so the actions after it send the
        translated bytes; with `table=` the pipeline forks as Open vSwitch's does:
        this pass goes on untracked and untranslated, and a translated copy,
        with its ct fields set, goes back to that table (`_recirculate`).
        False: the tracker dropped the packet (counted)."""
        ct: Ct = op[1]
        meta: tuple[int, ...] = op[2][fk.META_SLOTS]
        s = fk.CT_STATE - fk.METADATA
        md = self._ct_md
        if md is not None:  # an earlier ct in this action list: the datapath's view
            meta = (*meta[:s], *md, *meta[s + len(md) :])
        # after the rewrites before it, `in_port` too (a router clears it to send back)
        tracked = fk.extract(buf, op[2][fk.IN_PORT], meta=meta)
        mark, label = _ct_exec(ct)
        if tracked[fk.IP_FRAG] and self.ipf.enabled[4 if tracked[fk.ETH_TYPE] == 0x0800 else 6]:
            return self._fragment(op, buf, key, tracked, meta, mark, label)
        r = self.conntrack.process(
            buf,
            tracked,
            op[3],
            self.now,
            commit=ct.commit,
            mark=mark,
            label=label,
            nat=None if ct.nat is None else nat_range(ct.nat),
            force=ct.force,
            alg=ct.alg,
        )
        if r.drop is not None:
            self.drop(r.drop)
            self._dropped = True
            return False
        ctf = _ct_fields(r)
        if ct.table is None:
            if r.rewrite is not None:
                natpkt.rewrite(buf, tracked, r.rewrite, self._csum_partial)
            self._ct_md = ctf
            grown = self._helper_edit(buf, tracked, r.edit)
            # the FTP helper resized the payload: the outputs after this one are longer
            # behind the headers, which moves no offset of the virtio-net header
            return (("grown", grown), b"") if grown else True
        return self._forked(ct, r, ctf, buf, tracked, meta)

    def _forked(
        self,
        ct: Ct,
        r: CtResult,
        ctf: tuple[int, ...],
        buf: bytes | bytearray,
        tracked: Sequence[int],
        meta: tuple[int, ...],
    ) -> tuple[odp.Op, bytes]:
        """`ct(table=)`'s copy of the packet: translated, the helper's edit written,
        with the tracker's ct fields -- the recirculation (the packet itself, when
        nothing changed it: `buf` as bytes)."""
        s = fk.CT_STATE - fk.METADATA
        if r.rewrite is not None or r.edit is not None:
            data = bytearray(buf)
            if r.rewrite is not None:
                natpkt.rewrite(data, tracked, r.rewrite, self._csum_partial)
            grown = self._helper_edit(data, tracked, r.edit)
            out = bytes(data)
        else:
            grown = 0
            out = buf if isinstance(buf, bytes) else bytes(buf)
        meta = (*meta[:s], *ctf, *meta[s + len(ctf) :])
        return ("recirc", ct, meta, grown, tracked[fk.IN_PORT]), out

    def _helper_edit(self, buf: bytearray, key: Sequence[int], e: ftp.Edit | None) -> int:
        """What the FTP helper writes into a control segment, after NAT; the change
        in length."""
        if e is None:
            return 0
        v = 6 if key[fk.ETH_TYPE] == 0x86DD else 4
        return ftp.apply(buf, key[fk.L3_OFS], key[fk.L4_OFS], v, e, self._csum_partial)

    def _fragment(
        self,
        op: odp.Op,
        buf: bytearray,
        key: Sequence[int],
        tracked: tuple[int, ...],
        meta: tuple[int, ...],
        mark: tuple[int, int] | None,
        label: tuple[int, int] | None,
    ) -> bool:
        """A fragment at `ct`: held by `ipf` (nothing leaves yet), dropped with a reason,
        or the last its datagram needed -- then the datagram is tracked once and every
        fragment goes on with its state, translated as it is, in order of offset
        (`_release_fragments`, once this packet's actions are done).  With `table=` this pass
        goes on untracked, as for any packet; without, the actions after the `ct` wait
        for the datagram."""
        ct: Ct = op[1]
        zone: int = op[3]
        now = self.now
        self._dropped = True  # held or dropped: counted here, or not a drop
        gone = self.ipf.expire(now)
        if gone:
            self.drop("ipf_timeout", gone)
        rest = () if ct.table is not None else (_after(self._ops, op) or ())
        held = _Held(self._hdr, key, op[2], rest)
        res = self.ipf.add(buf, tracked, zone, now, held, point=self._recirculations)
        if res is None:
            return ct.table is not None
        if isinstance(res, Refused):
            self.drop(res.reason, res.count)
            return False
        whole = fk.extract(res.packet, key[fk.IN_PORT], meta=meta)
        r = self.conntrack.process(
            res.packet,
            whole,
            zone,
            now,
            commit=ct.commit,
            mark=mark,
            label=label,
            nat=None if ct.nat is None else nat_range(ct.nat),
            force=ct.force,
        )
        if r.drop is not None:
            self.drop(r.drop, len(res.parts))
            return False
        frames = res.fragments()
        if r.rewrite is not None:
            data = bytearray(res.packet)
            natpkt.rewrite(data, whole, r.rewrite, False)
            frames = res.fragments(bytes(data))
        self._released.append((ct, _ct_fields(r), list(zip(res.frags, frames, strict=True))))
        return ct.table is not None

    def _release_fragments(self) -> None:
        """The fragments of datagrams made whole go on, in order of offset, with the
        datagram's ct fields: recirculated (`table=`), or through the actions that
        followed their `ct`."""
        released, self._released = self._released, []
        s = fk.CT_STATE - fk.METADATA
        for ct, ctf, frags in released:
            for held, frame in frags:
                if ct.table is not None:
                    meta = held.fields[fk.META_SLOTS]
                    op = ("recirc", ct, (*meta[:s], *ctf, *meta[s + len(ctf) :]), 0,
                          held.fields[fk.IN_PORT])  # fmt: skip
                    self._recirculate(op, held.key, held.hdr, frame)
                else:
                    self._apply(held.rest, held.key, held.hdr, frame, None, ctf)

    def _recirculate(
        self, op: odp.Op, key: Sequence[int], hdr: bytes, frame: bytes
    ) -> tuple[Decision, tuple[int, ...]] | None:
        """`ct(table=N)`'s tracked packet through the pipeline again from table N --
        the full path's charges and egress, like any packet (Open vSwitch's
        recirculation).  The decision and the key it was made for (None: over
        the limit, dropped)."""
        if self._recirculations >= MAX_RECIRCULATIONS:
            self.drop("recirculation_limit")
            return None
        table: int = op[1].table
        # the packet goes on from where it was: `in_port` as the pipeline left it
        again = fk.extract(frame, op[4] if len(op) > 4 else key[fk.IN_PORT], meta=op[2])
        self._recirculations += 1
        try:
            d = self._pipeline.decide(
                again, self, table, packet_len(offload.wire_len(hdr, frame), again)
            )
            self._execute(d, again, hdr, frame)
        finally:
            self._recirculations -= 1
        return d, again

    # -- egress: the one way frames leave the switch --------------------------------
    def _egress(self, port_no: int, dst: int) -> tuple[Port | None, str | None]:
        """Where frames for `dst` sent to `port_no` go: (the port, None), or the port
        (if any) and why not -- a drop reason, or HOLD while its device is on the way.
        Whatever this depends on (ports, liveness, a port's locked MAC) bumps the
        pipeline version, so a cache entry may keep the answer."""
        port = self.ports.get(port_no)
        if port is None:
            return None, "no_such_port"
        if not port.live:
            if port.config.wait and port.admin_up:
                return port, HOLD
            return port, "port_down"
        if not port.tunnel and port.config.port_security and not egress_allowed(port, dst):
            return port, "not_promiscuous"
        return port, None

    def _output(
        self,
        port_no: int,
        frames: list[Frame],
        dst: int,
        key: Sequence[int],
        tun: Sequence[int] | None = None,
    ) -> None:
        self._send(self._egress(port_no, dst), frames, -1, key, tun)

    def _send(
        self,
        way: tuple[Port | None, str | None],
        frames: list[Frame],
        nbytes: int,
        key: Sequence[int],
        tun: Sequence[int] | None = None,
    ) -> None:
        """Queue `frames` (`nbytes` long; -1: not counted yet) on the port `_egress`
        chose, each with the virtio-net header its device wants; count a refusal.
        `_flush` hands each port's queue to its device in one call."""
        port, refusal = way
        if refusal is not None:
            self._refuse(port, refusal, frames)
            return
        assert port is not None
        if port.tunnel:
            for hdr, frame in frames:
                self._encap(port, hdr, frame, key, tun)
            return
        want = port.device.vnet_hdr
        if bool(frames[0][0]) != want:  # one call's frames come from one device
            fitted = [offload.fit(h, f, want) for h, f in frames]
            frames = [f for f in fitted if f is not None]
            if len(frames) < len(fitted):
                port.stats.tx_dropped += len(fitted) - len(frames)
                self.drop("gso_unsupported", len(fitted) - len(frames))
                if not frames:
                    return
            nbytes = -1
        if nbytes < 0:
            nbytes = sum([len(f[1]) for f in frames])
        tx = self._tx.get(port)
        if tx is None:
            self._tx[port] = (frames.copy(), [nbytes])
        else:
            tx[0].extend(frames)
            tx[1][0] += nbytes

    def _refuse(self, port: Port | None, reason: str, frames: list[Frame]) -> None:
        n = len(frames)
        if reason == HOLD:
            assert port is not None
            held = port.held
            room = HOLD_FRAMES - len(held)
            now = self.now
            for hdr, frame in frames[:room]:
                held.append((now, hdr, frame, int.from_bytes(frame[0:6], "big")))
            if n <= room:
                return
            reason, n = "port_down", n - room
        if port is not None:
            port.stats.tx_dropped += n
            if reason == "not_promiscuous":
                port.drop(reason, n)
        self.drop(reason, n)

    def _flush(self) -> None:
        """Send what `_send` queued: one call per port for the whole batch."""
        tx = self._tx
        if not tx:
            return
        self._tx = {}
        for port, (frames, nbytes) in tx.items():
            dev = port.device
            n = len(frames)
            taken = send_all(dev, frames)
            dev.flush()
            st = port.stats
            st.tx_packets += taken
            if taken == n:
                st.tx_bytes += nbytes[0]
            else:  # the device's queue is full: the rest are drops
                st.tx_bytes += sum([len(f[1]) for f in frames[:taken]])
                st.tx_dropped += n - taken
                self.drop("tx_queue_full", n - taken)

    def _encap(
        self, port: Port, hdr: bytes, frame: bytes, key: Sequence[int], tun: Sequence[int] | None
    ) -> None:
        """Out of a tunnel port: segmented if GSO, encapsulated, or answered as too big."""
        t = tun if tun is not None else key[fk.TUN_SLOTS]
        dev = port.device
        if not t[2]:
            port.stats.tx_dropped += 1
            self.drop("tunnel_no_destination")
            return
        segs = offload.segment(hdr, frame)
        if segs is None:
            port.stats.tx_dropped += 1
            self.drop("gso_unsupported")
            return
        cfg = port.config
        opts = (GeneveOption(0x0102, 0x80, t[5].to_bytes(4, "big")),) if t[5] else ()
        entropy = hash(_FLOW(key))  # ints hash the same in every process
        outer = encap.Outer(
            cfg.local_ip or t[1], t[2], t[0] & 0xFFFFFF, entropy, opts, udp_csum=cfg.udp_csum
        )
        # the largest inner frame the underlay carries (the overhead counts an inner
        # Ethernet header of 14 bytes; a VLAN tag inside is the frame's own length)
        room = getattr(dev, "path_mtu", lambda _d: 1500)(t[2]) - (
            encap.overhead(cfg.kind, 8 if opts else 0) - 14
        )
        st = port.stats
        for seg in segs:
            if len(seg) > room:
                st.tx_dropped += 1
                self.drop("tunnel_too_big")
                self._too_big(key, seg, room - header_len(seg)[0])
                continue
            self._ident = (self._ident + 1) & 0xFFFF
            packet = encap.encap(cfg.kind, seg, outer, self._ident)
            if not dev.send_ip(t[2], packet):  # type: ignore[attr-defined]
                st.tx_dropped += 1
                self.drop("tx_queue_full")
                continue
            st.tx_packets += 1
            st.tx_bytes += len(seg)

    def _too_big(self, key: Sequence[int], frame: bytes, mtu: int) -> None:
        """Tell the sender the overlay's MTU (path MTU discovery through the tunnel).

        IPv4 with DF gets ICMP "fragmentation needed" with the next-hop MTU, IPv6
        "packet too big"; IPv4 without DF is only counted (the tunnel does not
        fragment).  The answer leaves by the port the frame came in on, from the
        destination it was meant for."""
        reply = encap.too_big(frame, mtu)
        if reply is None:
            return
        self.too_big_sent += 1
        self._output(key[fk.IN_PORT], [(b"", reply)], key[fk.ETH_SRC], key)

    def _packet_in(self, op: tuple[Any, ...], key: Sequence[int], hdr: bytes, data: bytes) -> None:
        if self.on_packet_in is None or self.controllers_connected == 0:
            self.drop("no_controller")
            return
        fitted = offload.fit(hdr, data, False)
        fin = data if fitted is None else fitted[1]  # a GSO frame goes up as it is
        _, reason, max_len, table_id, cookie = op
        self.on_packet_in(PacketIn(reason, table_id, cookie, tuple(key), fin, len(fin), max_len))

    def packet_out(self, in_port: int, actions: Sequence[Action], frame: bytes) -> Decision:
        """OpenFlow PACKET_OUT: run `actions` on `frame` as if it came from `in_port`
        (PipelineError, nothing done: what a flow could not hold either)."""
        _refuse_unsupported(actions)
        key = fk.extract(frame, in_port)
        d = self.pipeline.execute(key, actions, self, None, packet_len(len(frame), key))
        self._execute(d, key, b"", frame)
        self._flush()
        return d

    def trace(
        self, key: Sequence[int], table: int = 0, ct_next: Sequence[int] = (), _depth: int = 0
    ) -> Tracer:
        """The packet's path, as `ofproto/trace` prints it.  Each `ct(table=N)` is
        followed into table N with the state `ct_next` gives in turn (`trk|new`
        when it runs out, as Open vSwitch assumes).  The tracker is only read,
        so a trace changes no connection: a `ct` with `nat` shows the
        translation its connection (or the range, for a commit) would give,
        written into the key by the datapath's own `packet.nat`."""
        tracer = Tracer(self.name)
        self.pipeline.translate(key, self, tracer, table)
        states = list(ct_next)
        for op in tracer.odp:
            ct: Ct | None = op[1] if op[0] == "ct" else None
            if ct is None:
                continue
            f = op[2]
            if f[fk.IP_FRAG] and self.ipf.enabled[4 if f[fk.ETH_TYPE] == 0x0800 else 6]:
                tracer.note(
                    f"ipf: a fragment: {ct.format()} holds it until its datagram is whole, "
                    "tracks the datagram once, and each fragment goes on with its state"
                )
            if ct.table is None:
                if ct.nat is not None:
                    changed = self._trace_nat(ct, list(op[2]), op[3])[1]
                    if changed:
                        tracer.note(f"nat: {changed} (by {ct.format()}, for the actions after it)")
                continue
            if _depth + 1 >= MAX_RECIRCULATIONS:
                tracer.note("recirculation limit reached")
                break
            state = states.pop(0) if states else TRK | NEW
            again = list(op[2])
            again[fk.CT_STATE], again[fk.CT_ZONE] = state, op[3]
            heading = ""
            if ct.nat is not None:
                bits, changed = self._trace_nat(ct, again, op[3])
                if changed:
                    again[fk.CT_STATE] = state = state | bits
                    heading = f", nat: {changed}"
            sub = self.trace(tuple(again), ct.table, states, _depth + 1)
            flags = BY_INDEX[fk.CT_STATE].format_value(state)
            tracer.recirculations.append(
                (f"recirc: {ct.format()} -> table {ct.table}, ct_state={flags}{heading}", sub)
            )
        return tracer

    def _trace_nat(self, ct: Ct, key: list[int], zone: int) -> tuple[int, str]:
        """Translate `key` as `ct`'s NAT would now: the NAT bits, and the fields it
        changed (`field before -> after`, ...; empty: none)."""
        assert ct.nat is not None
        rw, bits = self.conntrack.preview(key, zone, self.now, nat_range(ct.nat), ct.commit)
        if rw is None:
            return 0, ""
        before = list(key)
        natpkt.rewrite_key(key, rw)
        changes = []
        for i in (fk.IPV4_SRC, fk.IPV4_DST, fk.IPV6_SRC, fk.IPV6_DST, fk.TP_SRC, fk.TP_DST):
            if before[i] != key[i]:
                f = BY_INDEX[i]
                changes.append(f"{f.name} {f.format_value(before[i])} -> {f.format_value(key[i])}")
        return bits, ", ".join(changes)

    # -- time -------------------------------------------------------------------------
    def tick(self, now: float) -> list[tuple[Rule, str]]:
        """Age MACs and expire flows; returns the removed flows (for FLOW_REMOVED)."""
        self.settle()
        self.now = now
        if self._macs.expire(now):
            self._pipeline.invalidate()
        self.conntrack.expire(now)
        gone = self.ipf.expire(now)
        if gone:
            self.drop("ipf_timeout", gone)
        for port in self.ports.values():
            stale = [h for h in port.held if now - h[0] > HOLD_TIME]
            if stale:
                port.held = [h for h in port.held if now - h[0] <= HOLD_TIME]
                port.stats.tx_dropped += len(stale)
                self.drop("held_too_long", len(stale))
        return self._pipeline.expire(now)

    def stats(self) -> dict[str, Any]:
        self.settle()
        return {
            "name": self.name,
            "dpid": f"{self.dpid:016x}",
            "fail_mode": self.fail_mode,
            "fail_open": self.fail_open,
            "controllers": {
                "configured": self.controllers_configured,
                "connected": self.controllers_connected,
            },
            "rx_packets": self.rx_packets,
            "drops": dict(sorted(self.drops.items())),
            "cache": {
                "hits": self.pipeline.cache_hits,
                "misses": self.pipeline.cache_misses,
                "fast_hits": self.fast_hits,  # of `hits`: sent without a flow key
                "fast_entries": self._pipeline.signature_entries(),
            },
            "macs": len(self.macs),
            "flows": sum(len(t.by_id) for t in self.pipeline.tables),
        }
