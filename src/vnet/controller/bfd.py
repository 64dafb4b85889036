"""BFD between chassis, as the controller runs it: which sessions, and what they report.

Sessions (`peers`): a gateway chassis (of any router) runs BFD to every other
chassis, so every chassis runs it to each gateway chassis -- the relation is
symmetric, and each gateway chassis is watched by every chassis that would
send through it (and some that would not: a chassis hosting none of the
router's networks; a session costs little, and ports move).  A vnet switch
is configured through vnet's experimenter message (`ofp.vnetext`,
BFD_CONFIG with 100 ms timers and a multiplier of 3, over the tunnel port of
the peer's encapsulation); an Open vSwitch chassis the controller keeps over
OVSDB (`ovsdb` set) as OVN's ovn-controller does it -- a tunnel port per
peer of the peer's encapsulation, key 0, with `bfd:enable=true` and the same
timers (`ovsdb.bfd_ports`) -- and reports what its Interface rows'
`bfd_status` say.  Both ends must be configured (a session nobody answers
would read as a dead peer): an Open vSwitch chassis without `ovsdb` takes no
part, and none pairs with NVGRE (Open vSwitch has no NVGRE tunnel port).

Reports (`Reports`): a vnet switch sends every session's state when it takes
a BFD_CONFIG and each change after (for an Open vSwitch chassis its keeper
sends the whole of what the `bfd_status` columns say on each change); the
controller keeps them per chassis by peer address, turns addresses into
chassis ids, and writes the chassis'
`bfd_status` (`Northbound.report_bfd`) when what it says changes.  A session
that has never been up is left out of the report: a session still coming up
says "down" of a live peer, and that must not fail a gateway over.  So a
chassis that dies before any session to it came up is not seen down (as
without BFD).

Announcements (`gateway_announcements`): the chassis a router's gateway is
active on says so to the physical network -- a gratuitous ARP (an
unsolicited NA for IPv6) out of its uplink for the gateway's addresses and
the router's floating IPs it translates (not the distributed ones), from the
gateway's MAC -- so the physical switch moves the MAC to its port and the
upstream router's cache stays right.  The controller sends them when a
router's gateway becomes active on a chassis (its first sync there included);
on an external network on a VLAN the frames carry its tag (the uplink is a
trunk).

Standing down: the controller cannot reprogram a gateway chassis it has lost,
so a vnet switch isolated from every BFD peer stops being the gateway by
itself -- the controller tells it which of its flows stand down (vnet's
STAND_DOWN with `compiler.standing_down`'s cookies, `service`), and its
`datapath.bfd.Monitor` says when it is isolated.  Open vSwitch chassis do
not stand down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..compiler.nat import distributed
from ..model.l3 import active_gateway, routers_of
from ..model.objects import Chassis
from ..model.rules import ModelError, State
from ..ofp.vnetext import BfdWant
from ..packet.addr import ip4_int
from .northbound import Northbound

__all__ = ["GatewayAnnouncement", "Reports", "gateway_announcements", "peers", "wants"]

log = logging.getLogger("vnet.controller.bfd")


def _takes_part(ch: object) -> bool:
    """A chassis whose switch the controller configures BFD on: a vnet switch, or an Open
    vSwitch it keeps over OVSDB; an IPv4 underlay address either way."""
    if not isinstance(ch, Chassis) or ch.underlay is None or ":" in ch.underlay:
        return False
    return ch.switch == "vnet" or (ch.switch == "ovs" and ch.ovsdb is not None)


def _pairs(a: Chassis, b: Chassis) -> bool:
    """Whether a session between two taking part can run: Open vSwitch has no NVGRE port."""
    ovs = "ovs" in (a.switch, b.switch)
    return not (ovs and "nvgre" in (a.encap, b.encap))


def peers(state: State, chassis_id: str) -> set[str]:
    """The chassis `chassis_id` runs BFD to (vnet switches and the Open vSwitch chassis
    the controller keeps over OVSDB, with an IPv4 underlay address)."""
    me = state.get("chassis", chassis_id)
    if not _takes_part(me):
        return set()
    gateways = {c for r in state.all("router") if r.gateway is not None for c in r.gateway.chassis}
    out = {c.id for c in state.all("chassis")} if chassis_id in gateways else gateways
    chs = [state.get("chassis", c) for c in out if c != chassis_id]
    return {c.id for c in chs if _takes_part(c) and _pairs(me, c)}


def wants(state: State, chassis_id: str) -> list[BfdWant]:
    """The sessions a chassis is configured with, sorted by peer (a vnet switch's
    BFD_CONFIG; an Open vSwitch chassis' per-peer tunnel ports, `ovsdb.bfd_ports`)."""
    out = []
    for cid in peers(state, chassis_id):
        ch = state.get("chassis", cid)
        out.append(BfdWant(ip4_int(ch.underlay), ch.encap))
    return sorted(out, key=lambda w: w.peer)


class Reports:
    """What switches report of their sessions, by chassis, written to the store."""

    def __init__(self, nb: Northbound) -> None:
        self.nb = nb
        self.seen: dict[str, dict[int, str]] = {}  # chassis -> peer address -> state
        self.ever_up: dict[str, set[int]] = {}  # chassis -> peers whose session was up

    def received(self, chassis_id: str, states: dict[int, str], full: bool) -> bool:
        """Take a switch's report; whether the store was written."""
        seen = {} if full else dict(self.seen.get(chassis_id, {}))
        seen.update(states)
        self.seen[chassis_id] = seen
        up = self.ever_up.setdefault(chassis_id, set())
        up &= set(seen)  # a session gone starts over
        up |= {ip for ip, s in seen.items() if s == "up"}
        st = self.nb.state()
        by_ip = {ip4_int(c.underlay): c.id for c in st.all("chassis") if c.underlay}
        sessions = {by_ip[ip]: s for ip, s in seen.items() if ip in by_ip and ip in up}
        sessions.pop(chassis_id, None)
        try:
            return self.nb.report_bfd(chassis_id, sessions) is not None
        except ModelError as e:
            log.warning("chassis %s: bfd report not stored: %s", chassis_id, e)
            return False


@dataclass(frozen=True)
class GatewayAnnouncement:
    """What one chassis announces for one router's gateway, out of which uplink."""

    router: str
    uplink: str  # the interface of the gateway network's physnet on the chassis
    mac: str
    addresses: tuple[str, ...]
    vlan: int | None = None  # the external network's VLAN: the frames' tag on the trunk


def gateway_announcements(state: State, chassis_id: str) -> list[GatewayAnnouncement]:
    """The gateways active on `chassis_id`, with what it announces for each."""
    ch = state.get("chassis", chassis_id)
    if not isinstance(ch, Chassis):
        return []
    out = []
    for r in state.all("router"):
        g = r.gateway
        if g is None or g.mac is None or active_gateway(r, state) != chassis_id:
            continue
        net = state.get("network", g.network)
        if net is None or net.physnet not in ch.physnets:
            continue
        ips = [a for a in (g.ip, g.ip6) if a]
        for f in state.all("floating_ip"):
            pid = f.port or (f.port_forwardings[0].port if f.port_forwardings else None)
            port = state.get("port", pid) if pid else None
            if f.ip is None or f.network != net.id or port is None:
                continue
            if r not in routers_of(state, port, net.id)[:1]:
                continue
            pch = state.get("chassis", port.chassis) if port.chassis else None
            if not distributed(f, port, net, pch):
                ips.append(f.ip)
        uplink = ch.physnets[net.physnet]
        out.append(GatewayAnnouncement(r.id, uplink, g.mac, tuple(ips), net.vlan))
    return out
