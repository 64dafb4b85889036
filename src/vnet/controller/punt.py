"""Packets the pipeline sends to the controller: reject answers, the connection log and
a router's ICMP errors.

The compiled ACL stages send a packet to the controller with
`controller(reason=action)` when a rule rejects it (the flow drops it too)
and when a logged rule matches it (metered in the flows).  A router's
pipeline does when it cannot forward a packet: its TTL runs out, no
route matches, or it is longer than the next network's MTU.  The flow's
cookie says which: the compiler's `punts(lflows)`
(`compiler.acl`'s and `compiler.router`'s) map each such cookie to a `Punt`
-- a rule's (action, rule, log, direction, port) or a router's
(`router.Punt`: why, the router, the interface the packet came in by, the
ICMP type and code) -- and the handler keeps that map for the model's
revision, rebuilt when the model changes.

Every session delivers its packet-ins here, whatever the switch: a vnet
switch over OpenFlow or in this process (`LocalSouthbound`), or Open vSwitch.
The controller's connection has the equal role and asks, with SET_ASYNC, for
what OpenFlow 1.3 gives such a connection by default (packet-ins for no-match
and action, port status, flow removed): Open vSwitch sends action packet-ins
to every connection that asked, a vnet switch to every one not a slave.

A reject is answered at once (`packet.reject`: TCP RST, ICMP or ICMPv6
unreachable), by a packet-out on the chassis that punted:

- an egress rule runs on the sender's chassis before anything rewrote the
  frame, so the answer (addresses swapped) goes straight out of the
  packet-in's in_port, the sender's port;
- an ingress rule runs on the receiver's chassis, maybe after routing and
  maybe for a sender behind a tunnel, where in_port is no way back.  So the
  answer enters the pipeline as if the receiver had sent it (packet-out with
  in_port = the receiver's port, output to TABLE), as OVN's reject does: the
  frame is what the receiver would send (its MAC and address as source, the
  last hop's MAC as destination), and the pipeline routes and tunnels it
  back to the sender like any reply.  The packet-out loads `FLAG_ANSWER`
  into `REG_FLAGS` before its output: the firewall's stages on the way (the
  receiver's egress, the sender's ingress) let the switch's own answers
  through, whatever the connection's state -- the refused packet was never
  committed anywhere.

A router's punt is answered with its ICMP error (`packet.icmperr`: time
exceeded, net unreachable; ICMPv6 time exceeded, no route) from the
interface the packet came in by -- its MAC and address -- to the packet's
sender.  The router routes on the sender's chassis, before any rewrite
(nothing but the patch's registers), so the packet-in's in_port is the
sender's port and the answer goes straight out of it, through no table
(so no firewall stage holds it back), loading `FLAG_ANSWER` first as every
answer of the switch's own does.  The same packet-out on a vnet switch and
on Open vSwitch.  No error about an ICMP error, a later fragment, a
multicast or broadcast packet, or from a source that names no host or is
the router's own address (counted by why, `icmp_silent_*`); none for a
packet without a port to answer by (an echo reply the router itself made,
`in_port` 0: `icmp_silent_no_port`).  At most `ICMP_RATE` errors a second
per router with bursts of `ICMP_BURST` (a token bucket, as Linux's
icmp_ratelimit and icmp_msgs_per_sec): what the bucket refuses is counted
(`icmp_rate_limited`), what is sent by why (`icmp_ttl_expired`,
`icmp_no_route`), and each router's sent, rate-limited and silent in
`stats()["routers"]` (by router id; a deleted router's go with it).

Too big (`too-big`) differs in three ways.  IPv4 without DF may be
fragmented, and no datapath here fragments: it is dropped and counted
(`too_big_dropped_fragmentable`, `dropped_fragmentable` per router).  The
error (fragmentation needed 3/4, or ICMPv6 packet too big 2/0, the MTU in
the word after the checksum: RFC 1191, RFC 4443; an IPv6 packet to a
multicast group gets one too) is routed back: the punt came after routing
rewrote the frame's Ethernet header, maybe on the gateway chassis a tunnel
brought it to, so the packet-out (`routed_back`, in_port the controller)
loads the router's key and the packet's in interface and resubmits to
`lr_in_ip_routing`, and the router sends it to the sender like any packet.
Counted as `icmp_too_big` when sent.

A DHCP, DHCPv6 request or router solicitation (`compiler.dhcp.Punt`: the
kind, the port, its subnet) is answered from the model by `controller.dhcp`
the same way, straight out of the packet-in's port with `FLAG_ANSWER`
loaded; what it did is counted by name (`dhcp_offer`, `dhcp_ack`, ...).
`advertise` sends every port on a subnet with an `ipv6_mode` the router's
advertisement unsolicited (`ra_periodic`); the controller calls it every
`RA_INTERVAL` seconds (RFC 4861's MaxRtrAdvInterval default).

A router's next hop no flow resolves (`compiler.neighbour.Resolve`) and
ARP or neighbour discovery at a router's interface (`Learn`) go to
`controller.neighbour`: the first is asked for by an ARP request or a
neighbour solicitation injected into the out interface's network on the
chassis that punted (a packet-out whose actions enter the network's lookup
as the router's port, with no output of its own), the second learned into
the store; counted under `stats()["neighbours"]`.

Logged punts become records in the connection log (`flowlog.FlowLog`) with
the chassis, the tuple and the logical ports at both ends by name (the
rule's own port, and the other end found by its address in the rule port's
network, else in its tenant).

The handler bounds its own work: packet-ins wait in a queue of `QUEUE`
entries and a full queue drops them, counted; the log caps records a second.
Anything the handler cannot use -- another reason, an unknown cookie, a
frame no answer is due to -- is counted by reason and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..compiler import LFlow
from ..compiler.acl import punts as acl_punts
from ..compiler.dhcp import Punt as DhcpPunt
from ..compiler.dhcp import punts as dhcp_punts
from ..compiler.neighbour import Learn, Resolve
from ..compiler.neighbour import punts as neighbour_punts
from ..compiler.router import Punt as RouterPunt
from ..compiler.router import punts as router_punts
from ..compiler.stages import FLAG_ANSWER, REG_FLAGS, REG_INPORT, REG_NEXTHOP, REG_OUTPORT, table
from ..model.objects import Port
from ..model.rules import State
from ..ofp.channel import SwitchChannel
from ..ofp.convert import DP
from ..packet import flowkey as fk
from ..packet import icmperr
from ..packet.reject import answer
from ..pipeline.actions import Action, RegLoad, Resubmit, SetField
from ..pipeline.fields import lookup
from . import dhcp
from .bucket import Bucket
from .flowlog import FlowLog
from .neighbour import Neighbours

__all__ = [
    "ICMP_BURST",
    "ICMP_RATE",
    "QUEUE",
    "Bucket",
    "Link",
    "PacketIn",
    "Punt",
    "Punter",
    "ask_for_packet_ins",
    "compiled_punts",
    "from_ofp",
]

log = logging.getLogger("vnet.controller.punt")
QUEUE = 1024  # packet-ins waiting for the handler, at most
ICMP_RATE = 100.0  # a router's ICMP errors a second, at most ...
ICMP_BURST = 100  # ... with bursts of this many (traceroute sends its probes at once)
OFPP_TABLE, OFPP_CONTROLLER, OFPP_MAX = ofp.OFPP_TABLE, ofp.OFPP_CONTROLLER, ofp.OFPP_MAX
_REASONS = {ofp.OFPR_NO_MATCH: "no_match", ofp.OFPR_ACTION: "action",
            ofp.OFPR_INVALID_TTL: "invalid_ttl"}  # fmt: skip
_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
# an answer the pipeline carries: the firewall's flag bit set, the other flags kept
ANSWER: tuple[Action, ...] = (RegLoad(lookup(REG_FLAGS).index, FLAG_ANSWER.bit_length() - 1, 1, 1),)


class Punt(Protocol):
    """What the compiler says of a cookie whose flow sends to the controller."""

    @property
    def action(self) -> str: ...  # allow | deny | reject

    @property
    def rule(self) -> str: ...  # e.g. "policy web-db rule 2"

    @property
    def log(self) -> bool: ...

    @property
    def direction(self) -> str: ...  # ingress | egress

    @property
    def port(self) -> str: ...  # the logical port (name or id) whose rule it is


class Link(Protocol):
    """What the handler needs of a switch session."""

    @property
    def southbound(self) -> Any: ...

    @property
    def chassis(self) -> str | None: ...

    @property
    def ofports(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class PacketIn:
    """A packet-in, whichever southbound brought it."""

    dpid: int
    in_port: int
    cookie: int
    reason: str  # action | no_match | invalid_ttl
    frame: bytes


def from_ofp(dpid: int, msg: Any) -> PacketIn:
    """An os-ken OFPPacketIn as a `PacketIn`."""
    in_port = msg.match.get("in_port", 0) if msg.match is not None else 0
    reason = _REASONS.get(msg.reason, str(msg.reason))
    return PacketIn(dpid, int(in_port), int(msg.cookie), reason, bytes(msg.data or b""))


async def ask_for_packet_ins(ch: SwitchChannel) -> None:
    """Ask for OpenFlow 1.3's defaults, whatever the connection was told before:
    packet-ins (no match, action), port status and flow removed for the master or
    equal role, port status only for a slave."""
    msg = parser.OFPSetAsync(
        DP,
        [1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION, 0],
        [0b111, 0b111],
        [0b1111, 0],
    )
    refused = await ch.send_all([(None, msg)])
    if refused:
        log.info("switch %016x refused SET_ASYNC: %d/%d", ch.dpid, *refused[0][1:])


AnyPunt = Punt | RouterPunt | DhcpPunt | Resolve | Learn
RA_INTERVAL = 600.0  # seconds between unsolicited router advertisements


def compiled_punts(lflows: Sequence[LFlow]) -> Mapping[int, AnyPunt]:
    """The compiler's cookie -> Punt map of a model's logical flows: the firewall's
    and the routers'."""
    out: dict[int, AnyPunt] = dict(acl_punts(lflows))
    out.update(router_punts(lflows))
    out.update(dhcp_punts(lflows))
    out.update(neighbour_punts(lflows))
    return out


def not_fragmentable(frame: bytes) -> bool | None:
    """Whether a packet too big for the next network may not be fragmented on the way:
    IPv6 (only its source fragments) or IPv4 with Don't Fragment set; None for a frame
    that is no IP packet."""
    key = fk.extract(frame)
    et, l3 = key[fk.ETH_TYPE], key[fk.L3_OFS]
    if et == 0x86DD:
        return True
    if et != 0x0800 or len(frame) < l3 + 7:
        return None
    return bool(frame[l3 + 6] & 0x40)


def routed_back(p: RouterPunt) -> tuple[Action, ...]:
    """A packet-out's actions that route its frame (an error about a packet too big,
    whose Ethernet header the router already rewrote) through the router as if it came
    in by the interface the packet did: the route to its sender, the sender's MAC, the
    network's lookup, any tunnel -- as OVN's icmp4_error re-enters the router."""
    return (
        SetField(lookup("metadata").index, p.key),
        SetField(lookup(REG_INPORT).index, p.interface),
        SetField(lookup(REG_OUTPORT).index, 0),
        SetField(lookup(REG_NEXTHOP).index, 0),
        Resubmit(None, table("lr_in_ip_routing")),
    )


class Punter:
    def __init__(
        self,
        state: Callable[[], State],
        link: Callable[[int], Link | None],
        source: Callable[[State], Mapping[int, AnyPunt]],
        flow_log: FlowLog | None = None,
        queue: int = QUEUE,
        icmp_rate: float = ICMP_RATE,
        icmp_burst: int = ICMP_BURST,
        now: Callable[[], float] = time.monotonic,
        neighbours: Neighbours | None = None,
    ) -> None:
        self.state = state  # the model now
        self.link = link  # the session of a datapath id
        self.source = source  # the cookie -> Punt map of a model
        self.flow_log = flow_log if flow_log is not None else FlowLog()
        self.counts: Counter[str] = Counter()
        self.icmp_rate, self.icmp_burst, self.now = icmp_rate, icmp_burst, now
        self.neighbours = neighbours  # a router's neighbours: asked for and learned
        self._buckets: dict[str, Bucket] = {}  # router id -> its ICMP errors' bucket
        self.routers: dict[str, Counter[str]] = {}  # router id -> sent, rate_limited, silent
        self._size = queue
        self._queue: asyncio.Queue[PacketIn] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._punts: tuple[int, Mapping[int, AnyPunt]] | None = None
        self._where: tuple[int, dict[tuple[str, str], str]] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self._size)
        self._task = asyncio.create_task(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = self._queue = None

    def received(self, pi: PacketIn) -> None:
        """A switch sent a packet-in (from any thread): queue it for the handler."""
        loop, q = self._loop, self._queue
        if loop is None or q is None:
            self.counts["not_running"] += 1
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._put(q, pi)
        else:
            loop.call_soon_threadsafe(self._put, q, pi)

    def _put(self, q: asyncio.Queue[PacketIn], pi: PacketIn) -> None:
        try:
            q.put_nowait(pi)
        except asyncio.QueueFull:
            self.counts["queue_full"] += 1

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            pi = await self._queue.get()
            try:
                await self.handle(pi)
            except Exception:
                self.counts["failed"] += 1
                log.exception("packet-in from %016x", pi.dpid)

    # -- the work ------------------------------------------------------------------------------
    def punts(self, state: State) -> Mapping[int, AnyPunt]:
        if self._punts is None or self._punts[0] != state.revision:
            self._punts = (state.revision, self.source(state))
            there = {p.router for p in self._punts[1].values() if isinstance(p, RouterPunt)}
            for gone in set(self._buckets) - there:  # a deleted router's bucket and counts
                del self._buckets[gone]
                self.routers.pop(gone, None)
        return self._punts[1]

    async def handle(self, pi: PacketIn) -> None:
        """Answer a reject, log what a logged rule decided, send a router's ICMP error."""
        self.counts["packet_ins"] += 1
        if pi.reason != "action":
            self.counts["not_action"] += 1
            return
        state = self.state()
        p = self.punts(state).get(pi.cookie)
        if p is None:
            self.counts["unknown_cookie"] += 1
            return
        link = self.link(pi.dpid)
        if link is None:
            self.counts["no_session"] += 1
            return
        if isinstance(p, RouterPunt):
            await self._icmp_error(pi, p, link)
            return
        if isinstance(p, DhcpPunt):
            await self._dhcp(state, pi, p, link)
            return
        if isinstance(p, Resolve | Learn):
            await self._neighbour(state, pi, p, link)
            return
        port = self._rule_port(state, link, p.port)
        if p.action == "reject":
            await self._reject(pi, p, link, port)
        if p.log:
            self._log(state, pi, p, link, port)

    async def _reject(self, pi: PacketIn, p: Punt, link: Link, port: Port | None) -> None:
        out = answer(pi.frame)
        if out is None:
            self.counts["no_answer"] += 1
            return
        sb = link.southbound
        receiver = link.ofports.get(port.iface) if port is not None else None
        if p.direction == "ingress" and receiver is not None:
            await sb.packet_out(receiver, out, out_port=OFPP_TABLE, actions=ANSWER)
        else:
            await sb.packet_out(OFPP_CONTROLLER, out, out_port=pi.in_port)
        self.counts["rejected"] += 1

    async def _icmp_error(self, pi: PacketIn, p: RouterPunt, link: Link) -> None:
        seen = self.routers.setdefault(p.router, Counter())
        big = p.reason == "too-big"
        if big and not_fragmentable(pi.frame) is False:
            # IPv4 without DF may be fragmented; no datapath here fragments: dropped
            self.counts["too_big_dropped_fragmentable"] += 1
            seen["dropped_fragmentable"] += 1
            return
        six = big and p.family == 6  # packet too big may answer a multicast (RFC 4443)
        why = icmperr.silence(pi.frame, p.address, multicast_ok=six)
        if why is None and not big and not 0 < pi.in_port < OFPP_MAX:
            why = "no_port"
        if why is not None:
            self.counts[f"icmp_silent_{why}"] += 1
            seen["silent"] += 1
            return
        bucket = self._buckets.get(p.router)
        t = self.now()
        if bucket is None:
            bucket = self._buckets[p.router] = Bucket(self.icmp_rate, self.icmp_burst, t)
        if not bucket.take(t):
            self.counts["icmp_rate_limited"] += 1
            seen["rate_limited"] += 1
            return
        out = icmperr.error(pi.frame, *p.icmp, p.mac, p.address, rest=p.mtu, multicast_ok=six)
        assert out is not None  # silence() said one is due
        if big:  # routed back by the router, from the interface the packet came in by
            await link.southbound.packet_out(OFPP_CONTROLLER, out, out_port=None,
                                             actions=(*ANSWER, *routed_back(p)))  # fmt: skip
        else:
            await link.southbound.packet_out(OFPP_CONTROLLER, out, out_port=pi.in_port, actions=ANSWER)  # fmt: skip
        self.counts[f"icmp_{p.reason.replace('-', '_')}"] += 1
        seen["sent"] += 1

    async def _dhcp(self, state: State, pi: PacketIn, p: DhcpPunt, link: Link) -> None:
        out, what = dhcp.answer(state, p.kind, p.port, p.subnet, pi.frame)
        self.counts[what] += 1
        if out is not None and 0 < pi.in_port < OFPP_MAX:
            await link.southbound.packet_out(OFPP_CONTROLLER, out, out_port=pi.in_port, actions=ANSWER)  # fmt: skip

    async def _neighbour(self, state: State, pi: PacketIn, p: Resolve | Learn, link: Link) -> None:
        """Ask for an unresolved next hop (into its network, as the router's port there),
        or learn from ARP and neighbour discovery at a router's interface."""
        if self.neighbours is None:
            self.counts[f"{p.reason}_off"] += 1
            return
        if isinstance(p, Learn):
            self.neighbours.learn(state, p, pi.frame)
            return
        out = self.neighbours.request(state, p, pi.frame)
        if out is not None:
            frame, acts = out
            await link.southbound.packet_out(OFPP_CONTROLLER, frame, out_port=None, actions=(*ANSWER, *acts))  # fmt: skip

    async def advertise(self, links: Iterable[Link]) -> None:
        """Every port with an address on a subnet with an `ipv6_mode` gets the router's
        advertisement, unsolicited, out of its OpenFlow port on its chassis."""
        state = self.state()
        for link in links:
            for iface, frame in dhcp.advertisements(state, link.chassis):
                ofport = link.ofports.get(iface)
                if ofport is None:
                    continue
                await link.southbound.packet_out(OFPP_CONTROLLER, frame, out_port=ofport, actions=ANSWER)  # fmt: skip
                self.counts["ra_periodic"] += 1

    @staticmethod
    def _rule_port(state: State, link: Link, ref: str) -> Port | None:
        """The rule's port: by id, else by name among the ports bound to this chassis."""
        o = state.get("port", ref)
        if isinstance(o, Port):
            return o
        here = [o for o in state.all("port") if o.name == ref and o.chassis == link.chassis]
        return here[0] if len(here) == 1 else None

    def _owners(self, state: State) -> dict[tuple[str, str], str]:
        """(network or tenant id, address) -> port name."""
        if self._where is None or self._where[0] != state.revision:
            where: dict[tuple[str, str], str] = {}
            for o in state.all("port"):
                for ip in o.ips:
                    a = str(ipaddress.ip_address(ip))
                    where.setdefault((o.network, a), o.name)
                    where.setdefault((o.tenant, a), o.name)
            self._where = (state.revision, where)
        return self._where[1]

    def _log(self, state: State, pi: PacketIn, p: Punt, link: Link, port: Port | None) -> None:
        key = fk.extract(pi.frame, pi.in_port)
        et, proto = key[fk.ETH_TYPE], key[fk.IP_PROTO]
        if et == 0x0800:
            src = str(ipaddress.IPv4Address(key[fk.IPV4_SRC]))
            dst = str(ipaddress.IPv4Address(key[fk.IPV4_DST]))
        elif et == 0x86DD:
            src = str(ipaddress.IPv6Address(key[fk.IPV6_SRC]))
            dst = str(ipaddress.IPv6Address(key[fk.IPV6_DST]))
        else:
            self.counts["not_ip"] += 1
            return
        sport: int | None = None
        dport: int | None = None
        if proto in (6, 17, 132) and not key[fk.IP_FRAG] & fk.FRAG_LATER:
            sport, dport = key[fk.TP_SRC], key[fk.TP_DST]
        elif proto in (1, 58):
            sport, dport = key[fk.ICMP_TYPE], key[fk.ICMP_CODE]
        owners = self._owners(state)
        own = port.name if port is not None else p.port

        def other(addr: str) -> str | None:
            if port is None:
                return None
            return owners.get((port.network, addr)) or owners.get((port.tenant, addr))

        ch = state.get("chassis", link.chassis) if link.chassis else None
        rec = self.flow_log.add(
            chassis=ch.name if ch is not None else f"{pi.dpid:016x}",
            proto=_PROTOS.get(proto, str(proto)),
            src=src,
            dst=dst,
            sport=sport,
            dport=dport,
            src_port=own if p.direction == "egress" else other(src),
            dst_port=own if p.direction == "ingress" else other(dst),
            verdict=p.action,
            rule=p.rule,
            direction=p.direction,
            port=own,
        )
        self.counts["logged" if rec is not None else "log_dropped"] += 1

    def stats(self) -> dict[str, Any]:
        q = self._queue
        return {"queued": q.qsize() if q is not None else 0, **dict(sorted(self.counts.items())),
                "log": self.flow_log.stats(),
                "routers": {r: dict(sorted(c.items())) for r, c in sorted(self.routers.items())},
                "neighbours": self.neighbours.stats() if self.neighbours is not None else {}}  # fmt: skip
