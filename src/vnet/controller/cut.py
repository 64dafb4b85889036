"""Cutting connections a model change denies: their conntrack entries go.

The compiled flows stop a denied connection's next packet; this removes what
is left of it on the switches -- its conntrack entries -- so nothing of it
survives the change (the issue's "its conntrack entry goes"), and counts the
live connections a change would cut (`apply --dry-run`).

Which entries: each chassis gives every logical port bound (or still plugged)
there a zone of its own (`localize.zones`), so an entry's zone names a port,
and its original tuple's addresses name that port and the other end (a port
of the same network with that address).  The entry's service is its
protocol and destination port (ICMP: type and code).  An entry is cut when
the verdict for (source port, destination port, service) was allow before
the change and is not after (`policy.Evaluator.intended`) -- exactly the
pairs `policy.delta` reports as closed, judged per connection rather than per
class.  Entries whose other end is no port of the model (a router, the
outside) and ports the change creates or deletes are left alone: the delta
says nothing of them.

How: per chassis a `ConntrackAccess` reads entries a zone at a time (lines
as `ovs-appctl dpctl/dump-conntrack` prints them, which vnet prints too) and
flushes one connection by zone and original tuple (dpctl/flush-conntrack's
syntax):

- a vnet switch in this process: its tracker, directly;
- a vnet switch elsewhere on this host: its control socket (`ct-dump`,
  `ct-flush`), found next to its management socket (`unix:DIR/NAME.mgmt` ->
  `DIR/NAME.ctl`) or in the run directory under the chassis' name;
- Open vSwitch on this host: `ovs-appctl -t vswitchd.ctl` in the directory of
  its OVSDB socket (as the lab and the tests run it), else its default.

A chassis none of these reaches is reported as such; the flows still stop
its connections' packets, only their entries linger until they time out.
Reading and flushing run in worker threads: the controller's loop goes on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..compiler.localize import peers, tunnel_ports, zones
from ..datapath.conntrack import format_conn
from ..datapath.control import orig_tuple, request, rundir
from ..datapath.switch import SwitchError
from ..model.objects import Chassis, Port
from ..model.policy import Evaluator, Service
from ..model.rules import State

__all__ = [
    "ConntrackAccess",
    "Cut",
    "CutReport",
    "Cutter",
    "Entry",
    "LocalConntrack",
    "OvsConntrack",
    "VnetConntrack",
    "access_for",
    "judge",
    "parse_entry",
    "port_zones",
    "survey",
    "trackers",
]

log = logging.getLogger("vnet.controller.cut")

_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
_LINE = re.compile(r"^(?P<proto>[a-z0-9]+?)(?P<six>6)?,orig=\((?P<orig>[^)]*)\)")
_ZONE = re.compile(r",zone=(\d+)")
_ICMP_OF = {"IPv4": 1, "IPv6": 58}


@dataclass(frozen=True)
class Entry:
    """One conntrack entry, as dump-conntrack prints it: its zone and original tuple."""

    zone: int
    ethertype: str  # IPv4 | IPv6
    proto: int
    src: str
    dst: str
    sport: int = 0  # ICMP: the id
    dport: int = 0  # ICMP: the type
    code: int = 0  # ICMP: the code
    line: str = ""

    @property
    def icmp(self) -> bool:
        return self.proto == _ICMP_OF[self.ethertype]

    def service(self) -> Service | None:
        """What the connection's first packet asked for; None if no service says it."""
        try:
            if self.proto in (6, 17):
                return Service(self.ethertype, self.proto, port=self.dport)
            if self.icmp:
                return Service(self.ethertype, self.proto, icmp_type=self.dport, icmp_code=self.code)  # fmt: skip
            return Service(self.ethertype, self.proto)
        except ValueError:
            return None

    def tuple_text(self) -> str:
        """The original tuple in dpctl/flush-conntrack's syntax."""
        v = "nw" if self.ethertype == "IPv4" else "ipv6"
        head = f"ct_{v}_src={self.src},ct_{v}_dst={self.dst},ct_nw_proto={self.proto}"
        if self.icmp:
            return f"{head},icmp_id={self.sport},icmp_type={self.dport},icmp_code={self.code}"
        if self.proto in (6, 17, 132):
            return f"{head},ct_tp_src={self.sport},ct_tp_dst={self.dport}"
        return head


def parse_entry(line: str) -> Entry | None:
    """An entry from one dump-conntrack line (vnet's or Open vSwitch's); None if it is none."""
    m = _LINE.match(line.strip())
    if m is None:
        return None
    name = m["proto"]
    proto = _PROTOS.get(name)
    if proto is None:
        return None
    fields = dict(kv.partition("=")[::2] for kv in m["orig"].split(","))
    try:
        a, b = ipaddress.ip_address(fields["src"]), ipaddress.ip_address(fields["dst"])
        src, dst = str(a), str(b)
        fam = "IPv6" if a.version == 6 else "IPv4"
        if proto in (1, 58):
            sport, dport = int(fields.get("id", 0)), int(fields.get("type", 0))
            code = int(fields.get("code", 0))
        else:
            sport, dport, code = int(fields.get("sport", 0)), int(fields.get("dport", 0)), 0
    except (KeyError, ValueError):
        return None
    z = _ZONE.search(line)
    return Entry(int(z[1]) if z else 0, fam, proto, src, dst, sport, dport, code, line.strip())


# -- judging -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cut:
    """An entry the change denies: on which chassis, between which ports, and why."""

    chassis: str  # by name
    entry: Entry
    src: str  # port names
    dst: str
    service: Service
    after: str  # the verdict after the change

    def __str__(self) -> str:
        return f"{self.chassis}: {self.src} -> {self.dst} {self.service} ({self.after})"


def port_zones(state: State, chassis: Chassis, ofports: Mapping[str, int]) -> dict[int, Port]:
    """Zone -> the port it belongs to on `chassis`, as `localize` assigns them."""
    far = peers(state, chassis, tuple(tunnel_ports(ofports)))
    here = [
        p
        for p in state.all("port")
        if p.iface in ofports and (p.chassis == chassis.id or p.chassis in far)
    ]
    return {z: p for p, z in ((state.get("port", pid), z) for pid, z in zones(here).items())}


def _addresses(state: State) -> dict[tuple[str, str], Port]:
    """(network id, address) -> the port that has it."""
    return {(p.network, _canon(ip)): p for p in state.all("port") for ip in p.ips}


def _canon(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def judge(
    before: State,
    after: State,
    chassis: Chassis,
    zone_ports: Mapping[int, Port],
    entries: Iterable[Entry],
    evaluators: tuple[Evaluator, Evaluator] | None = None,
) -> list[Cut]:
    """The entries of `chassis` (zone -> port as before the change) whose connection
    `before` allows and `after` does not."""
    eb, ea = evaluators or (Evaluator(before), Evaluator(after))
    owner = _addresses(before)
    out = []
    src: Port | None
    dst: Port | None
    for e in entries:
        port = zone_ports.get(e.zone)
        svc = e.service()
        if port is None or svc is None:
            continue
        mine = {_canon(ip) for ip in port.ips}
        if e.src in mine:
            src, dst = port, owner.get((port.network, e.dst))
        elif e.dst in mine:
            src, dst = owner.get((port.network, e.src)), port
        else:
            continue
        if src is None or dst is None or src.id == dst.id:
            continue
        src_a, dst_a = after.get("port", src.id), after.get("port", dst.id)
        if src_a is None or dst_a is None:
            continue  # a port the change deletes: no verdict after it
        vb = eb.intended(src, dst, svc, e.src, e.dst)
        if not vb.allowed:
            continue
        va = ea.intended(src_a, dst_a, svc, e.src, e.dst)
        if not va.allowed:
            out.append(Cut(chassis.name, e, src.name, dst.name, svc, str(va)))
    return out


def affected(before: State, after: State) -> set[str]:
    """Ids of the ports whose verdicts the change may close: the `delta`'s, found cheaply --
    every port of a tenant whose groups, policies or ports changed."""
    tenants = set()
    for kind in ("security_group", "policy", "port", "network"):
        ids = {o.id for o in before.all(kind)} | {o.id for o in after.all(kind)}
        for oid in ids:
            a, b = before.get(kind, oid), after.get(kind, oid)
            if a is None or b is None or a.spec() != b.spec():
                tenants.add((a or b).tenant)
    return {p.id for p in before.all("port") if p.tenant in tenants}


# -- reaching a chassis' tracker ---------------------------------------------------------------------
class ConntrackAccess(Protocol):
    where: str  # how the tracker is reached, for people

    def dump(self, zone: int) -> list[str]: ...

    def flush(self, zone: int, tuple_text: str) -> int: ...


class LocalConntrack:
    """A vnet switch in this process."""

    def __init__(self, switch: Any) -> None:
        self.switch = switch
        self.where = f"switch {switch.name} in this process"

    def dump(self, zone: int) -> list[str]:
        sw = self.switch
        return [format_conn(c, sw.now) for c in sw.conntrack.conns(zone)]

    def flush(self, zone: int, tuple_text: str) -> int:
        return int(self.switch.conntrack.flush(zone, orig_tuple(tuple_text)))


class VnetConntrack:
    """A vnet switch on this host, through its control socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = f"control socket {path}"

    def dump(self, zone: int) -> list[str]:
        return list(request(self.path, "ct-dump", zone=zone))

    def flush(self, zone: int, tuple_text: str) -> int:
        return int(request(self.path, "ct-flush", zone=zone, tuple=tuple_text)["flushed"])


class OvsConntrack:
    """Open vSwitch on this host, through ovs-appctl."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.where = f"ovs-appctl -t {target or 'ovs-vswitchd'}"

    def _run(self, *args: str) -> str:
        exe = shutil.which("ovs-appctl")
        if exe is None:
            raise OSError("ovs-appctl is not installed")
        cmd = [exe, *(("-t", self.target) if self.target else ()), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        if r.returncode != 0:
            raise OSError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
        return r.stdout

    def dump(self, zone: int) -> list[str]:
        return [x for x in self._run("dpctl/dump-conntrack", f"zone={zone}").splitlines() if x]

    def flush(self, zone: int, tuple_text: str) -> int:
        self._run("dpctl/flush-conntrack", f"zone={zone}", tuple_text)
        return 1


def access_for(chassis: Chassis, switch: Any = None) -> ConntrackAccess | None:
    """How this controller reaches `chassis`' tracker (`switch`: its in-process vnet
    switch, if it has one); None if it cannot."""
    if switch is not None:
        return LocalConntrack(switch)
    if chassis.switch == "ovs":
        remote = chassis.ovsdb or ""
        if remote.startswith("unix:"):
            d = Path(remote.removeprefix("unix:")).parent
            for cand in [d / "vswitchd.ctl", *sorted(d.glob("ovs-vswitchd.*.ctl"))]:
                if cand.exists():
                    return OvsConntrack(str(cand))
        return OvsConntrack(None) if shutil.which("ovs-appctl") else None
    cands = []
    if chassis.endpoint and chassis.endpoint.startswith("unix:"):
        cands.append(chassis.endpoint.removeprefix("unix:").removesuffix(".mgmt") + ".ctl")
    cands.append(os.path.join(rundir(), f"{chassis.name}.ctl"))
    for c in cands:
        if os.path.exists(c):
            return VnetConntrack(c)
    return None


# -- one pass over the chassis -------------------------------------------------------------------
@dataclass
class CutReport:
    """What a pass found (and, unless a dry run, cut), per chassis."""

    cuts: list[Cut] = field(default_factory=list)
    flushed: int = 0
    unreachable: dict[str, str] = field(default_factory=dict)  # chassis name -> why

    @property
    def connections(self) -> int:
        """Connections, not entries: one has an entry in each of its ports' zones."""
        return len({(c.src, c.dst, c.entry.tuple_text()) for c in self.cuts})

    def as_dict(self) -> dict[str, Any]:
        """One record per connection, with its entries (chassis and zone)."""
        conns: dict[tuple[str, str, str], dict[str, Any]] = {}
        for c in self.cuts:
            rec = conns.setdefault(
                (c.src, c.dst, c.entry.tuple_text()),
                {"from": c.src, "to": c.dst, "service": str(c.service),
                 "tuple": c.entry.tuple_text(), "after": c.after, "entries": []},
            )  # fmt: skip
            rec["entries"].append({"chassis": c.chassis, "zone": c.entry.zone})
        return {
            "count": len(conns),
            "connections": list(conns.values()),
            "unreachable": dict(self.unreachable),
        }


async def survey(
    before: State,
    after: State,
    chassis: Sequence[tuple[Chassis, Mapping[str, int], ConntrackAccess | None]],
    flush: bool,
) -> CutReport:
    """Over each chassis (with its switch's port numbers and tracker access), the entries in
    the zones of the ports the change may close whose connection it denies; `flush`
    removes them too."""
    report = CutReport()
    ports = affected(before, after)
    if not ports:
        return report
    evs = (Evaluator(before), Evaluator(after))
    for ch, ofports, access in chassis:
        mine = {z: p for z, p in port_zones(before, ch, ofports).items() if p.id in ports}
        if not mine:
            continue
        if access is None:
            report.unreachable[ch.name] = "its tracker is not reachable from the controller"
            continue
        try:
            entries = []
            for z in sorted(mine):
                lines = await asyncio.to_thread(access.dump, z)
                entries += [e for e in map(parse_entry, lines) if e is not None and e.zone == z]
            cuts = judge(before, after, ch, mine, entries, evs)
            report.cuts += cuts
            if flush:
                for c in cuts:
                    report.flushed += await asyncio.to_thread(
                        access.flush, c.entry.zone, c.entry.tuple_text()
                    )
                    log.info("cut %s", c)
        except (OSError, SwitchError, ValueError) as e:
            report.unreachable[ch.name] = f"{access.where}: {e}"
            log.warning("chassis %s: conntrack: %s", ch.name, e)
    return report


def trackers(
    state: State, sessions: Iterable[Any]
) -> list[tuple[Chassis, Mapping[str, int], ConntrackAccess | None]]:
    """For each connected switch (a controller `Session`) whose chassis `state` knows: the
    chassis, its switch's port numbers and how its tracker is reached."""
    out: list[tuple[Chassis, Mapping[str, int], ConntrackAccess | None]] = []
    for s in sessions:
        ch = state.get("chassis", s.chassis or "")
        if ch is not None and s.ofports:
            local = getattr(s.southbound, "switch", None)  # a vnet switch in this process
            out.append((ch, dict(s.ofports), access_for(ch, local)))
    return out


class Cutter:
    """The controller's memory of the last model it cut for: each new one is compared with
    it, and the connections the change denies are cut (`survey` with flush)."""

    def __init__(self) -> None:
        self.seen: State | None = None
        self.last: CutReport | None = None
        self.total = 0  # connections cut since start

    async def model_changed(self, state: State, sessions: Iterable[Any]) -> CutReport | None:
        """Cut what the change from the last model seen to `state` denies (the switches have
        `state`'s flows by now); None the first time, or if nothing changed."""
        before, self.seen = self.seen, state
        if before is None or before.revision == state.revision:
            return None
        report = await survey(before, state, trackers(before, sessions), flush=True)
        self.total += report.flushed
        if report.cuts or report.unreachable:
            self.last = report
        for name, why in report.unreachable.items():
            log.warning("chassis %s: connections the change denies not cut: %s", name, why)
        return report
