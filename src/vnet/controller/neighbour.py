"""The controller's side of a router's neighbours: ask, learn, age (OVN's pinctrl
put_arp / put_nd, MAC_Binding and mac_binding_age_threshold).

Three duties, each driven by the compiler's punts (`compiler.neighbour`):

- Ask (`request`).  A packet whose next hop no flow resolves arrives with a
  `Resolve` punt: the router, the out interface (its network, subnet, MAC,
  address and the router's port key in the network) and the next hop's
  address when it is a static route's (else the packet's destination is).
  The answer is an ARP request (IPv4: broadcast, sender the interface's MAC
  and address) or a neighbour solicitation (IPv6: to the target's
  solicited-node group, from the interface's address, its MAC as source
  link-layer option, hop limit 255), sent on the chassis that punted by a
  packet-out that enters the network's lookup as the router's port there
  (`metadata` = the network's key, `reg6` = the port's key, then a resubmit
  to `ls_in_l2_lkup`, no output of its own): the network floods it to its
  ports, the other chassis and, on an external network, out of this
  chassis' uplink -- tagged on a VLAN network -- as any frame the router
  sends there.  The answer flag is loaded as for every answer of the
  switch's own, so no firewall holds it back.  The punted packet is dropped;
  a later one finds the binding.  At most one request per (router, address)
  every `RESOLVE_INTERVAL` seconds, and `RESOLVE_RATE` a second per router
  (bursts of `RESOLVE_BURST`): what is held back is counted
  (`resolve_rate_limited`).
- Learn (`learn`).  ARP (the sender's address and MAC: requests, replies,
  gratuitous ones), a neighbour advertisement (the target and its target
  link-layer option, else the frame's source MAC) or a solicitation (its
  source and source link-layer option) reaching an interface arrives with
  a `Learn` punt.  Neighbour discovery is taken only with hop limit 255
  (RFC 4861 7.1.2: from the link itself).  Only an address on the
  interface's subnet is learned -- never the subnet's network or broadcast
  address, never the router's own -- and a unicast MAC that is not zero.
  The binding is written to the store (`Northbound.learn`) when it is new,
  when its MAC changed, or when it is older than half the age, so a chatty
  neighbour costs no store write per packet; what was done is counted
  (`neighbour_learned`, `_moved`, `_refreshed`, `_fresh`, `_ignored_*`).
- Age (`age_out`).  A binding not heard from for `age` seconds (the
  controller's `neighbour_age`, default `NEIGHBOUR_AGE`; 0: never) is
  deleted, and so is one its router can no longer use (the router gone, or
  its interface on that network): a later packet asks again.  Before that,
  a binding heard from longer than half the age ago is asked for again
  (`probes`: the same request, from a chassis that hosts the router -- the
  active gateway chassis for the gateway): a neighbour still there answers
  and is refreshed, so one in use is not dropped for a moment every `age`
  seconds (the switch answers its own ARP for the router, which the router
  never sees).  The controller runs both every `sweep_interval(age)`
  seconds.

Times in the store are wall-clock seconds (`seen_at`), since every
controller and a restarted one read them; the rate limits use the monotonic
clock.  Both clocks are given, so tests inject them.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..compiler.neighbour import Learn, Resolve
from ..compiler.stages import DATAPATH_KEY, REG_INPORT, table
from ..model.l3 import active_gateway
from ..model.neighbour import neighbour_id, on_interface, orphans
from ..model.objects import Neighbour, Router
from ..model.routing import Interface, interfaces
from ..model.rules import ModelError, State
from ..packet import arp, ethernet, icmpv6, ipv6
from ..packet import flowkey as fk
from ..packet.errors import DecodeError
from ..pipeline.actions import Action, Resubmit, SetField
from ..pipeline.fields import lookup
from .bucket import Bucket
from .northbound import Northbound

__all__ = [
    "NEIGHBOUR_AGE",
    "RESOLVE_INTERVAL",
    "Neighbours",
    "injection",
    "solicitation",
    "sweep_interval",
]

NEIGHBOUR_AGE = 300.0  # seconds a learned binding lives unheard (0: for ever)
RESOLVE_INTERVAL = 1.0  # seconds between two requests for one (router, address)
RESOLVE_RATE = 50.0  # a router's requests a second, at most ...
RESOLVE_BURST = 50  # ... with bursts of this many
_PENDING_MAX = 4096  # (router, address) pairs remembered for the interval, at most
BROADCAST = (1 << 48) - 1
_METADATA, _INPORT = lookup(DATAPATH_KEY).index, lookup(REG_INPORT).index


def sweep_interval(age: float) -> float:
    """How often the controller looks for expired bindings: a quarter of the age,
    between 1 and 60 seconds (every minute for orphans when nothing expires)."""
    return 60.0 if age <= 0 else max(1.0, min(age / 4, 60.0))


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _mac_text(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _senders(state: State, r: Router, itf: Interface) -> list[str]:
    """The chassis a router's request into `itf`'s network may leave from: the active
    gateway chassis for its gateway, else every chassis with a port on one of the
    router's networks (each hosts all of them)."""
    if itf.gateway:
        gw = active_gateway(r, state)
        return [gw] if gw is not None else []
    nets = {i.network for i in interfaces(state, r)}
    return sorted({p.chassis for p in state.all("port") if p.network in nets and p.chassis})


def solicitation(p: Resolve, target: str) -> bytes:
    """The ARP request or neighbour solicitation for `target` out of `p`'s interface."""
    mac, t = _mac(p.mac), ipaddress.ip_address(target)
    src = int(ipaddress.ip_address(p.address))
    if t.version == 4:
        req = arp.build(arp.ARP_REQUEST, mac, src, 0, int(t))
        return ethernet.build(BROADCAST, mac, ethernet.ETH_TYPE_ARP, req)
    sn = int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(t) & 0xFFFFFF)
    ns = icmpv6.build_ns(src, sn, int(t), sll=mac)
    pkt = ipv6.build(src, sn, 58, ns, hop_limit=255)
    return ethernet.build((0x3333 << 32) | (sn & 0xFFFFFFFF), mac, ethernet.ETH_TYPE_IPV6, pkt)


def injection(vni: int, port_key: int) -> tuple[Action, ...]:
    """A packet-out's actions that send its frame into network `vni`'s lookup as the
    router's port `port_key` there (no output: the pipeline's flows forward it)."""
    return (
        SetField(_METADATA, vni),
        SetField(_INPORT, port_key),
        Resubmit(None, table("ls_in_l2_lkup")),
    )


class Neighbours:
    """Requests, learning and aging of routers' neighbours, against one northbound."""

    def __init__(
        self,
        nb: Northbound,
        age: float = NEIGHBOUR_AGE,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        interval: float = RESOLVE_INTERVAL,
        rate: float = RESOLVE_RATE,
        burst: int = RESOLVE_BURST,
    ) -> None:
        if age < 0:
            raise ValueError(f"neighbour_age: {age} is negative (0: never age)")
        self.nb, self.age, self.clock, self.monotonic = nb, age, clock, monotonic
        self.interval, self.rate, self.burst = interval, rate, burst
        self.counts: Counter[str] = Counter()
        self._asked: dict[tuple[str, str], float] = {}  # (router, address) -> when
        self._buckets: dict[str, Bucket] = {}  # router id -> its requests' bucket

    # -- ask ------------------------------------------------------------------------------------
    def request(
        self, state: State, p: Resolve, frame: bytes
    ) -> tuple[bytes, tuple[Action, ...]] | None:
        """The frame to send and the packet-out's actions that inject it, or None (counted
        by why) when no request is due."""
        target = p.nexthop or self._destination(frame, p.family)
        if target is None:
            self.counts["resolve_malformed"] += 1
            return None
        a = ipaddress.ip_address(target)
        if a.version != p.family or a not in ipaddress.ip_network(p.cidr):
            self.counts["resolve_off_subnet"] += 1
            return None
        net = state.get("network", p.network)
        if net is None or not net.segment_id or not p.port_key:
            self.counts["resolve_stale"] += 1
            return None
        now = self.monotonic()
        k = (p.router, str(a))
        last = self._asked.get(k)
        if last is not None and now - last < self.interval:
            self.counts["resolve_rate_limited"] += 1
            return None
        b = self._buckets.get(p.router)
        if b is None:
            b = self._buckets[p.router] = Bucket(self.rate, self.burst, now)
        if not b.take(now):
            self.counts["resolve_rate_limited"] += 1
            return None
        if len(self._asked) >= _PENDING_MAX:
            self._asked = {x: t for x, t in self._asked.items() if now - t < self.interval}
            if len(self._asked) >= _PENDING_MAX:
                self._asked.clear()
        self._asked[k] = now
        self.counts["resolve_arp" if a.version == 4 else "resolve_ns"] += 1
        return solicitation(p, str(a)), injection(net.segment_id, p.port_key)

    @staticmethod
    def _destination(frame: bytes, family: int) -> str | None:
        try:
            key = fk.extract(frame, 0)
        except (DecodeError, ValueError, IndexError):
            return None
        if family == 4 and key[fk.ETH_TYPE] == 0x0800:
            return str(ipaddress.IPv4Address(key[fk.IPV4_DST]))
        if family == 6 and key[fk.ETH_TYPE] == 0x86DD:
            return str(ipaddress.IPv6Address(key[fk.IPV6_DST]))
        return None

    # -- learn ----------------------------------------------------------------------------------
    def learn(self, state: State, p: Learn, frame: bytes) -> str:
        """Learn what `frame` says of a neighbour at `p`'s interface; what was done."""
        try:
            heard = self._heard(frame, p.family)
        except (DecodeError, ValueError, IndexError):
            heard = None
        if heard is None:
            return self._count("neighbour_ignored_malformed")
        ip, mac = heard
        a = ipaddress.ip_address(ip)
        net = ipaddress.ip_network(p.cidr)
        if a.version != net.version or a not in net:
            return self._count("neighbour_ignored_off_subnet")
        if a == net.network_address or (a.version == 4 and a == net.broadcast_address):
            return self._count("neighbour_ignored_off_subnet")
        if a == ipaddress.ip_address(p.address):
            return self._count("neighbour_ignored_own")
        if mac == 0 or mac >> 40 & 1:
            return self._count("neighbour_ignored_mac")
        text, now = _mac_text(mac), self.clock()
        old = state.get("neighbour", neighbour_id(p.router, p.network, str(a)))
        if isinstance(old, Neighbour) and old.mac == text:
            if self.age <= 0 or now - old.seen_at < self.age / 2:
                return self._count("neighbour_fresh")
            what = "neighbour_refreshed"
        else:
            what = "neighbour_moved" if isinstance(old, Neighbour) else "neighbour_learned"
        try:
            self.nb.learn(p.router, p.network, str(a), text, now)
        except ModelError:
            return self._count("neighbour_refused")
        return self._count(what)

    def _count(self, what: str) -> str:
        self.counts[what] += 1
        return what

    @staticmethod
    def _heard(frame: bytes, family: int) -> tuple[str, int] | None:
        """(address, MAC) a frame tells of its sender, or None."""
        eth, off = ethernet.parse(frame)
        if family == 4:
            if eth.ethertype != ethernet.ETH_TYPE_ARP:
                return None
            m, _ = arp.parse(frame, off)
            if m.op not in (arp.ARP_REQUEST, arp.ARP_REPLY) or not m.spa:
                return None
            return str(ipaddress.IPv4Address(m.spa)), m.sha
        if eth.ethertype != ethernet.ETH_TYPE_IPV6:
            return None
        h, o = ipv6.parse(frame, off)
        if h.next_header != 58 or h.hop_limit != 255:
            return None
        msg, o2 = icmpv6.parse(frame, o)
        end = min(len(frame), o + h.payload_length)
        if msg.type == icmpv6.ND_NA:
            nd = icmpv6.parse_nd(frame, o2, msg.type, end)
            return str(ipaddress.IPv6Address(nd.target)), nd.tll or eth.src
        if msg.type == icmpv6.ND_NS:
            nd = icmpv6.parse_nd(frame, o2, msg.type, end)
            if not h.src or not nd.sll:
                return None  # duplicate address detection, or no address to learn
            return str(ipaddress.IPv6Address(h.src)), nd.sll
        return None

    # -- age ------------------------------------------------------------------------------------
    def expired(self, state: State) -> list[Neighbour]:
        """Bindings not heard from for the age, and those no router can use."""
        now = self.clock()
        old = [n for n in state.all("neighbour") if self.age > 0 and now - n.seen_at > self.age]
        seen = {n.id for n in old}
        return old + [n for n in orphans(state) if n.id not in seen]

    def probes(self, state: State) -> list[tuple[list[str], bytes, tuple[Action, ...]]]:
        """A request for each binding heard from longer than half the age ago and not
        expired: (the chassis it may leave from, best first; the frame; the packet-out's
        actions).  Its answer refreshes it, so a neighbour in use stays while one gone
        ages out."""
        if self.age <= 0:
            return []
        now, out = self.clock(), []
        for n in state.all("neighbour"):
            if not self.age / 2 <= now - n.seen_at <= self.age:
                continue
            r = state.get("router", n.router)
            net = state.get("network", n.network)
            itf = on_interface(state, r, n.network, n.ip) if isinstance(r, Router) else None
            if itf is None or net is None or not net.segment_id or not itf.tunnel_key:
                continue
            p = Resolve("probe", r.id, r.name, itf.number, itf.network, itf.subnet, itf.cidr,
                        itf.family, itf.mac or "", itf.address, itf.tunnel_key, n.ip)  # fmt: skip
            out.append((_senders(state, r, itf), solicitation(p, n.ip),
                        injection(net.segment_id, itf.tunnel_key)))  # fmt: skip
        self.counts["neighbour_probes"] += len(out)
        return out

    def age_out(self) -> int:
        """Delete what `expired` finds; how many went."""
        state = self.nb.state()
        gone = self.expired(state)
        n = self.nb.forget(gone)
        self.counts["neighbour_aged"] += n
        routers = {x.router for x in state.all("neighbour")} | {r.id for r in state.all("router")}
        for rid in set(self._buckets) - routers:
            del self._buckets[rid]
        return n

    def stats(self) -> dict[str, Any]:
        return dict(sorted(self.counts.items()))
