"""The vnet switch datapath: ports, the pipeline, and what happens to each frame.

`Switch.receive` is the per-packet path, the same for every port kind:

1. port security on ingress (`portsec.ingress_check`), counted by reason;
2. flow key (`flowkey.extract`), then the pipeline's cached decision
   (`Pipeline.decide`: exact-match cache in front of the tuple-space
   classifier), with `normal` answered by this switch (MAC learning, VLANs);
3. side operations (MAC learning) replayed, counters charged;
4. a decision that only outputs (`Decision.plain`) sends the frame as
   received, with its virtio-net header; anything else goes through
   `odp.apply` (rewrites, VLAN push/pop, clones, meters) first;
5. each copy leaves through `_transmit`: the port must exist and be live,
   receive only what port security lets it (no promiscuous mode), and its
   device must take the frame -- every refusal is a drop with a reason.

In front of all that sits a per-port cache keyed by the frame's signature
(`flowkey.signature`: the header bytes the flow key is made of, for plain
IPv4 TCP/UDP/ICMP), as Open vSwitch's datapath flow table sits in front of
its slow path.  An entry holds what the full path decided for the first frame
of the signature when that decision was to output the frame unchanged (or to
drop it): the ports, already checked live and allowed to receive it.
`receive_batch` queues every later frame of that signature on its entry and,
at the end of the batch (or before a frame that needs the full path), hands
the frames of all entries with the same ports to their devices in one call
per port (`send_all`: a transmit ring takes them in one go), entry after
entry, and charges the port and drop counters.  Frames of one flow keep
their order; frames of different flows in one batch may leave grouped by
flow, as in Open vSwitch's userspace datapath.  Any change that could alter
a decision (flows, groups, ports, MAC table, a port's locked MAC,
controllers) bumps the pipeline's version and empties the cache.

What a cached frame owes its rules, tables and groups (packets, bytes, last
use) and the MAC table (the source's age) waits in its entry until `settle`,
as Open vSwitch's datapath flows keep their statistics until a revalidator
pushes them: one charge per entry however many batches it served, instead
of one per entry per batch -- with a thousand flows each batch is a
thousand different entries.  `settle` runs before the full path handles a
frame (learning and evicting see every sighting), before flow and group
changes (a deleted flow's counters leave with it), on every `tick` (aging
and idle timeouts), and before anything reads those counters (`stats`,
`fdb`, and the OpenFlow agent before each message), so the totals anyone
sees are the ones the full path would have charged frame by frame.  Charges
commute, a rule's last use only moves forward, and a late MAC refresh only
refreshes -- never relearns or moves an address a port change flushed -- so
nothing else needs to settle first.

Nothing is lost silently: a frame the switch did not deliver anywhere is in
`drops` under its reason (`no_match`, `port_security`..., `meter`,
`tx_queue_full`, `port_down`, `malformed`, `no_controller`).

Fail modes are Open vSwitch's: `standalone` installs the default
`priority=0 actions=NORMAL` flow when no controller is configured and falls
back to learning (fail-open) while configured controllers are all
unreachable; `secure` only ever forwards on installed flows.

The switch does no I/O itself beyond calling its ports' devices; the event
loop (`loop.py`) feeds it and the OpenFlow agent (`vnet.ofp`) configures it.
Time is passed in.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..ids import datapath_id
from ..packet import encap
from ..packet import flowkey as fk
from ..packet.errors import DecodeError
from ..packet.ethernet import header_len
from ..packet.geneve import GeneveOption
from ..pipeline import odp
from ..pipeline.actions import OFPP_LOCAL, Action, Ct, Nat, Output
from ..pipeline.context import XContext
from ..pipeline.engine import Decision, Pipeline
from ..pipeline.errors import ErrorKind, PipelineError
from ..pipeline.flow import Flow, FlowMod, FlowModCommand, Instructions, Rule
from ..pipeline.groups import GroupMod, GroupModCommand
from ..pipeline.match import Match
from ..pipeline.trace import Tracer
from . import offload
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


class _Fast:
    """A cached forwarding decision for one signature on one ingress port."""

    __slots__ = ("d", "drop", "nbytes", "outs", "packets", "queue", "refused", "used")

    def __init__(self, d: Decision, outs: tuple[Port, ...], refused: tuple[Port, ...]) -> None:
        self.d = d
        self.outs = outs
        self.refused = refused  # ports port security keeps the frame from
        self.drop = (d.drop_reason or "no_output") if not d.plain else None
        self.queue: list[Frame] = []  # this batch's frames, sent together
        self.packets = 0  # frames served since the last `settle`, their bytes and last time
        self.nbytes = 0
        self.used = 0.0


FAST_ENTRIES = 8192  # per ingress port


def _refuse_unsupported(actions: Iterable[Action]) -> None:
    for a in actions:
        if isinstance(a, (Ct, Nat)):
            raise PipelineError(
                ErrorKind.UNSUPPORTED_ACTION,
                f"{a.name}: connection tracking is not available in this switch",
            )


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
        self.pipeline = Pipeline(n_tables)
        self.ports: dict[int, Port] = {}
        self.macs = MacTable(mac_aging, port_limit=self._mac_limit)
        self.meters = MeterTable()
        self.drops: dict[str, int] = {}
        self.controllers_configured = 0
        self.controllers_connected = 0
        self.on_packet_in: Callable[[PacketIn], None] | None = None
        self.on_port_status: Callable[[str, Port], None] | None = None
        self.now = now
        self.rx_packets = 0
        self._standalone_flow = False
        self._metered = False
        self._dirty: set[Device] = set()  # devices holding sends until `_flush`
        self._fast: dict[int, dict[fk.Signature, _Fast]] = {}  # ingress port -> signature -> entry
        self._fast_version = -1
        self.fast = True  # the signature cache in front of the full path (off: every frame parsed)
        self.fast_hits = 0
        self._unsettled: list[_Fast] = []  # entries whose charges wait for `settle`
        self._ident = 0  # outer IPv4 identification of tunnel packets
        self.too_big_sent = 0  # ICMP "too big" answers to oversize frames for a tunnel
        self._sync_default_flow()

    # -- configuration ---------------------------------------------------------------
    def _mac_limit(self, port_no: int) -> int:
        p = self.ports.get(port_no)
        return p.config.mac_limit if p is not None else 0

    def _sync_default_flow(self) -> None:
        want = self.fail_mode == FailMode.STANDALONE and not self.controllers_configured
        if want and not self._standalone_flow:
            self.pipeline.add_flows([NORMAL_FLOW], self.now)
        elif not want and self._standalone_flow:
            self.pipeline.commit([FlowMod(FlowModCommand.DELETE_STRICT, NORMAL_FLOW)])
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
        self.pipeline.invalidate()

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
        self.pipeline.invalidate()
        if self.on_port_status:
            self.on_port_status("add", port)
        return port

    def del_port(self, name: str) -> Port:
        port = self.port_by_name(name)
        if port is None:
            raise SwitchError(f"no port {name!r} on {self.name}")
        del self.ports[port.port_no]
        self.macs.flush(port.port_no)
        self.pipeline.invalidate()
        port.device.close()
        if self.on_port_status:
            self.on_port_status("delete", port)
        return port

    def set_link(self, port: Port, up: bool) -> None:
        if port.link_up == up:
            return
        port.link_up = up
        if not up:
            self.macs.flush(port.port_no)
        self.pipeline.invalidate()
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
                self._transmit(port.port_no, hdr, frame, dst, ())
        self._flush()

    def set_admin(self, port: Port, up: bool) -> None:
        if port.admin_up != up:
            port.admin_up = up
            self.pipeline.invalidate()
            if self.on_port_status:
                self.on_port_status("modify", port)

    def commit(self, mods: Sequence[FlowMod | GroupMod]) -> list[Rule]:
        """Apply flow and group mods atomically (PipelineError: nothing changed)."""
        self.settle()
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
        """Frames in from `port`: cached signatures sent at once, the rest the full way."""
        self.now = now
        if not port.live or not self.fast:
            for hdr, frame in frames:
                self._receive(port, hdr, frame)
            self._flush()
            return
        cache = self._fast_cache(port.port_no)
        touched: list[_Fast] = []
        sig_of = fk.signature
        for f in frames:
            sig = sig_of(f[1])
            e = cache.get(sig) if sig is not None else None
            if e is None:
                if touched:  # what came before goes first
                    self._send_queued(port, touched)
                    touched = []
                self._receive(port, f[0], f[1], None, sig)
                if self._fast_version != self.pipeline.version:
                    cache = self._fast_cache(port.port_no)  # what was cached may be stale now
                continue
            q = e.queue
            if not q:
                touched.append(e)
            q.append(f)
        if touched:
            self._send_queued(port, touched)
        self._flush()

    def _fast_cache(self, port_no: int) -> dict[fk.Signature, _Fast]:
        if self._fast_version != self.pipeline.version:
            self._fast.clear()
            self._fast_version = self.pipeline.version
        cache = self._fast.get(port_no)
        if cache is None:
            cache = self._fast[port_no] = {}
        return cache

    def _remember(self, port: Port, sig: fk.Signature, d: Decision, dst: int) -> None:
        """Cache a decision that outputs the frame unchanged (or drops it) for `sig`."""
        if d.plain is None or not d.cacheable or self.fail_open:
            return
        outs: list[Port] = []
        refused: list[Port] = []
        vnet = port.device.vnet_hdr
        for p in d.plain:
            out = self.ports.get(p)
            if out is None or not out.live or out.tunnel or out.device.vnet_hdr != vnet:
                return  # the full path has more to do for this one
            if out.config.port_security and not egress_allowed(out, dst):
                refused.append(out)
            else:
                outs.append(out)
        cache = self._fast_cache(port.port_no)
        if len(cache) >= FAST_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[sig] = _Fast(d, tuple(outs), tuple(refused))

    def _send_queued(self, port: Port, touched: list[_Fast]) -> None:
        """Send the entries' frames, one call per output port for all entries that
        go the same way; charge ports and drops now, the rest at `settle`."""
        now = self.now
        unsettled = self._unsettled
        ways: dict[tuple[Port, ...], list[Frame]] = {}
        total = total_bytes = 0
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
            if e.outs:
                way = ways.get(e.outs)
                if way is None:
                    ways[e.outs] = q
                else:
                    way.extend(q)
            if e.refused:
                for out in e.refused:
                    out.stats.tx_dropped += n
                    out.drop("not_promiscuous", n)
                    self.drop("not_promiscuous", n)
            if e.drop is not None:
                self.drop(e.drop, n)
        for outs, q in ways.items():
            n = len(q)
            nbytes = total_bytes if n == total else sum([len(f[1]) for f in q])
            for out in outs:
                ost = out.stats
                taken = send_all(out.device, q)
                self._dirty.add(out.device)
                ost.tx_packets += taken
                if taken == n:
                    ost.tx_bytes += nbytes
                else:  # the device's queue is full: the rest are drops
                    ost.tx_bytes += sum([len(f[1]) for f in q[:taken]])
                    ost.tx_dropped += n - taken
                    self.drop("tx_queue_full", n - taken)
        st = port.stats
        st.rx_packets += total
        st.rx_bytes += total_bytes
        self.rx_packets += total
        self.fast_hits += total
        self.pipeline.cache_hits += total

    def settle(self) -> None:
        """Charge what cached frames owe since the last call: rules, tables and groups
        (packets, bytes, last use), and their sources' MAC ages (refreshed only)."""
        pending = self._unsettled
        if not pending:
            return
        self._unsettled = []
        pipeline = self.pipeline
        refresh = self.macs.refresh
        for e in pending:
            d = e.d
            for op in d.side:
                refresh(op[1], op[2], op[3], e.used)
            if d.rules or d.groups:
                pipeline.account(d, e.nbytes, e.used, e.packets)
            e.packets = e.nbytes = 0

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
            info = fk.TunnelInfo(d.key, d.src, d.dst, options=d.options)
            self._receive(port, b"", d.inner, info)
        self._flush()

    def receive(
        self, port: Port, hdr: bytes, frame: bytes, tunnel: fk.TunnelInfo | None = None
    ) -> None:
        """One frame in from `port`: forwarded, or counted as a drop."""
        self._receive(port, hdr, frame, tunnel)
        self._flush()

    def _flush(self) -> None:
        if self._dirty:
            for dev in self._dirty:
                dev.flush()
            self._dirty.clear()

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
        version = self.pipeline.version
        if port.config.port_security:
            locked = port.locked_mac
            bad = ingress_check(port, key)
            if port.locked_mac != locked:
                self.pipeline.invalidate()  # what this port may send and receive changed
            if bad is not None:
                st.rx_dropped += 1
                port.drop(bad)
                self.drop(bad)
                return
        if self.fail_open:
            d = self._fail_open_decision(key)
        else:
            d = self.pipeline.decide(key, self)
        self._execute(d, key, hdr, frame)
        if sig is not None and self.pipeline.version == version:  # nothing learned meanwhile
            self._remember(port, sig, d, key[fk.ETH_DST])

    def _fail_open_decision(self, key: tuple[int, ...]) -> Decision:
        return self.pipeline.execute(key, (Output(0xFFFFFFFA),), self)

    def _execute(self, d: Decision, key: Sequence[int], hdr: bytes, frame: bytes) -> None:
        self.settle()  # what the cache served comes first
        now = self.now
        if d.side:
            macs = self.macs
            for op in d.side:
                if macs.learn(op[1], op[2], op[3], now):
                    self.pipeline.invalidate()
        if d.rules or d.groups:
            self.pipeline.account(d, len(frame), now)
        plain = d.plain
        if plain is not None:
            if not plain:
                self.drop(d.drop_reason or "no_output")
                return
            dst = key[fk.ETH_DST]
            for p in plain:
                self._transmit(p, hdr, frame, dst, key)  # each refusal is counted there
            return
        self._metered = False
        outs = odp.apply(frame, key, d.odp, self._meter)
        if not outs:
            if not self._metered:  # a meter drop is counted where it happens
                self.drop(d.drop_reason or "no_output")
            return
        base = len(frame)
        for op, data in outs:
            kind = op[0]
            if kind == "output":
                h = offload.shift(hdr, len(data) - base) if len(data) != base else hdr
                tun = op[2] if len(op) > 2 else None
                self._transmit(op[1], h, data, int.from_bytes(data[0:6], "big"), key, tun)
            elif kind == "controller":
                self._packet_in(op, key, hdr, data)
            elif kind == "normal":
                # `normal` reached the datapath unexpanded (packet-out to NORMAL)
                self.drop("normal_unexpanded")
            elif kind == "ct":
                self.drop("ct_unsupported")

    def _meter(self, meter_id: int, nbytes: int) -> bool:
        if self.meters.admit(meter_id, nbytes, self.now):
            return True
        self.drop("meter")
        self._metered = True
        return False

    def _transmit(
        self,
        port_no: int,
        hdr: bytes,
        frame: bytes,
        dst: int,
        key: Sequence[int],
        tun: Sequence[int] | None = None,
    ) -> None:
        port = self.ports.get(port_no)
        if port is None:
            self.drop("no_such_port")
            return
        if not port.live:
            if port.config.wait and port.admin_up and len(port.held) < HOLD_FRAMES:
                port.held.append((self.now, hdr, frame, dst))  # its cable is on the way
                return
            port.stats.tx_dropped += 1
            self.drop("port_down")
            return
        if port.tunnel:
            self._encap(port, hdr, frame, key, tun)
            return
        if port.config.port_security and not egress_allowed(port, dst):
            port.stats.tx_dropped += 1
            port.drop("not_promiscuous")
            self.drop("not_promiscuous")
            return
        dev = port.device
        if not dev.vnet_hdr and hdr:
            fin = offload.finish(hdr, frame)
            if fin is None:
                port.stats.tx_dropped += 1
                self.drop("gso_unsupported")
                return
            frame, hdr = fin, b""
        elif dev.vnet_hdr and not hdr:
            hdr = offload.NO_HDR
        if not dev.send(hdr, frame):
            port.stats.tx_dropped += 1
            self.drop("tx_queue_full")
            return
        self._dirty.add(dev)
        st = port.stats
        st.tx_packets += 1
        st.tx_bytes += len(frame)

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
        self._transmit(key[fk.IN_PORT], b"", reply, key[fk.ETH_SRC], key)

    def _packet_in(self, op: tuple[Any, ...], key: Sequence[int], hdr: bytes, data: bytes) -> None:
        if self.on_packet_in is None or self.controllers_connected == 0:
            self.drop("no_controller")
            return
        fin = offload.finish(hdr, data) if hdr else data
        if fin is None:
            fin = data
        _, reason, max_len, table_id, cookie = op
        self.on_packet_in(PacketIn(reason, table_id, cookie, tuple(key), fin, len(fin), max_len))

    def packet_out(self, in_port: int, actions: Sequence[Action], frame: bytes) -> Decision:
        """OpenFlow PACKET_OUT: run `actions` on `frame` as if it came from `in_port`."""
        key = fk.extract(frame, in_port)
        d = self.pipeline.execute(key, actions, self)
        self._execute(d, key, b"", frame)
        self._flush()
        return d

    def trace(self, key: Sequence[int], table: int = 0) -> Tracer:
        tracer = Tracer(self.name)
        self.pipeline.translate(key, self, tracer, table)
        return tracer

    # -- time -------------------------------------------------------------------------
    def tick(self, now: float) -> list[tuple[Rule, str]]:
        """Age MACs and expire flows; returns the removed flows (for FLOW_REMOVED)."""
        self.settle()
        self.now = now
        if self.macs.expire(now):
            self.pipeline.invalidate()
        for port in self.ports.values():
            stale = [h for h in port.held if now - h[0] > HOLD_TIME]
            if stale:
                port.held = [h for h in port.held if now - h[0] <= HOLD_TIME]
                port.stats.tx_dropped += len(stale)
                self.drop("held_too_long", len(stale))
        return self.pipeline.expire(now)

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
                "fast_entries": sum(len(c) for c in self._fast.values()),
            },
            "macs": len(self.macs),
            "flows": sum(len(t.by_id) for t in self.pipeline.tables),
        }
