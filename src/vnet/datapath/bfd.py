"""A BFD session (RFC 5880, asynchronous mode): the liveness of one peer chassis.

Pure state, no I/O: every call takes `now` (seconds, from whatever clock the
caller runs on -- the switch's event loop, or a test's fake clock).  The I/O
shell asks `due(now)` / `next_wake(now)`, sends what `transmit(now)` returns,
feeds what arrives to `receive(packet, now)`, and calls `expire(now)` so a
silent peer is noticed.  The wire format, and how Open vSwitch carries it
over a tunnel, is in `vnet.packet.bfd`.

State machine (RFC 5880 §6.2, §6.8.6): Down -> Init when the peer says Down,
Down/Init -> Up when it says Init/Up; Up -> Down when it says Down
(diagnostic "neighbor signaled session down"), when it says AdminDown
(the same diagnostic, from any state but Down), or when a Detection Time
passes without a valid packet while Init or Up (diagnostic "control detection
time expired"; the peer's discriminator is forgotten).  `admin_down` holds
the session in AdminDown (packets say so, received ones are ignored, the
peer goes Down with "neighbor signaled session down"); `admin_up` returns it
to Down.

Timers (§6.8.2-§6.8.4, §6.8.7): the transmit interval is the larger of our
desired min TX and the peer's required min RX, less a random 0-25 % (10-25 %
with a multiplier of 1); while not Up the desired min TX we use and advertise
is at least 1 s (§6.8.3).  Nothing periodic is sent while the peer's
required min RX is 0.  The detection time is the peer's multiplier times the
larger of our required min RX and the peer's desired min TX, counted from the
last valid packet.  With 100 ms both ways and multiplier 3 a silent peer is
Down after 300 ms.

Poll sequence (§6.5): `set_intervals` while Up sends Poll with the new
values until a packet with Final comes back; only then are they used (a
slower RX is not relied upon before the peer knows, and a faster one is not
assumed early).  A Poll from the peer is answered at once with Final.
Authentication and Demand mode are not implemented: a packet with the A bit
is discarded (`RxDrop.AUTH`), the D bit is ignored (we never ask for it).

`forwarding` is Open vSwitch's notion: Up and the peer not reporting a
path-down diagnostic.  `flaps` counts changes of `forwarding`.

`Monitor` is the switch's set of sessions, one per (tunnel port, peer
underlay address), and the only part that touches packets: the switch offers
it every frame a tunnel port decapsulated with key 0 before the pipeline
(BFD frames are kept, as Open vSwitch's `check_tnl_key` does), and the
runner's BFD timer calls `run` when `next_wake` says; control packets leave
encapsulated with key 0 from the port's local address.  A tunnel port here is
flow-based (one per encapsulation, every peer behind it), so sessions are
told apart by Your Discriminator, or by the outer source while the peer does
not know ours yet.  The control socket adds and removes sessions
(`bfd-add`, `bfd-del`) and reports them (`bfd-show`); `on_change` is where
a layer above learns of a change.

Isolation (`Monitor.isolated`): the switch has at least one session, at
least one of them has been Up since it was added, and none is Up now -- its
underlay is cut from every peer (OVN's ha_chassis_group_is_active: a
chassis whose BFD sessions are all down is not an active gateway).  A switch
whose sessions never came up is not isolated (a chassis starting, or peers
without BFD), nor one without sessions.  It is reevaluated on each session
change and on `add`/`remove`, never per packet; `on_isolated` is told when
it changes -- the switch makes the flows that stand down (the controller's
stand-down set: the flows that make this chassis a router's active gateway)
match nothing while it lasts, so a gateway chassis cut from everyone while
its uplink is up does not go on answering for a gateway another chassis has
taken over.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..packet import encap
from ..packet.addr import ip4_str
from ..packet.bfd import Bfd, BfdError, Diag, State, frame, is_bfd, parse_frame
from .port import Port

__all__ = ["MIN_INTERVAL_US", "BfdConfigError", "Monitor", "RxDrop", "Session"]

SLOW_TX_US = 1_000_000  # §6.8.3: the floor of desired min TX while not Up
MIN_INTERVAL_US = 1_000  # 1 ms: the smallest interval a session is configured with
_PATH_DOWN = frozenset((Diag.PATH_DOWN, Diag.CPATH_DOWN, Diag.RCPATH_DOWN))


class RxDrop(Enum):
    """Why `receive` discarded a packet (after the codec's own checks)."""

    AUTH = "authentication not configured"
    YOUR_DISC = "your discriminator is not ours"
    ADMIN_DOWN = "session is administratively down"


class BfdConfigError(ValueError):
    """A session asked for with a bad parameter; the message names it."""


def _interval(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BfdConfigError(f"bfd {name}: {value!r} is not an integer (microseconds)")
    if not MIN_INTERVAL_US <= value < 1 << 32:
        raise BfdConfigError(f"bfd {name}: {value} us out of range {MIN_INTERVAL_US}..4294967295")
    return value


def _mult(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
        raise BfdConfigError(f"bfd detect_mult: {value!r} out of range 1..255")
    return value


class Session:
    """The BFD session to one peer; `local_disc` must be unique among the caller's sessions."""

    def __init__(
        self,
        local_disc: int,
        now: float,
        *,
        desired_min_tx: int = 100_000,
        required_min_rx: int = 100_000,
        detect_mult: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= local_disc < 1 << 32:
            raise BfdConfigError(f"bfd local_disc: {local_disc} out of range 1..4294967295")
        self.local_disc = local_disc
        self.detect_mult = _mult(detect_mult)
        self.cfg_min_tx = _interval("desired_min_tx", desired_min_tx)
        self.cfg_min_rx = _interval("required_min_rx", required_min_rx)
        self.min_tx = self.cfg_min_tx  # in force (changes through a poll sequence while Up)
        self.min_rx = self.cfg_min_rx
        self.rng = rng or random.Random()
        self.state = State.DOWN
        self.diag = Diag.NONE
        self.remote_state = State.DOWN
        self.remote_diag = Diag.NONE
        self.remote_disc = 0
        self.remote_min_rx = 1  # §6.8.1: initialised to 1 us
        self.remote_min_tx = 0
        self.remote_mult = 0
        self.polling = False  # we sent Poll and wait for Final
        self.final_due = False  # the peer polled; the next packet carries Final
        self.last_rx: float | None = None
        self.last_tx: float | None = None
        self.next_tx = now  # the first packet goes out at once
        self.detect_deadline: float | None = None
        self.flaps = 0
        self.rx_packets = 0
        self.tx_packets = 0
        self.drops: dict[RxDrop, int] = {}
        self._forwarding = False

    # -- derived values -------------------------------------------------------

    @property
    def forwarding(self) -> bool:
        return self.state == State.UP and self.remote_diag not in _PATH_DOWN

    def advertised_min_tx(self) -> int:
        tx = self.cfg_min_tx if self.polling else self.min_tx
        return tx if self.state == State.UP else max(tx, SLOW_TX_US)

    def advertised_min_rx(self) -> int:
        return self.cfg_min_rx if self.polling else self.min_rx

    def tx_interval(self) -> int:
        """Microseconds between periodic packets, before jitter."""
        tx = self.min_tx if self.state == State.UP else max(self.min_tx, SLOW_TX_US)
        return max(tx, self.remote_min_rx)

    def detection_time(self) -> int:
        """Microseconds of silence after which the session goes Down (0 before the peer is heard)."""
        return self.remote_mult * max(self.min_rx, self.remote_min_tx)

    # -- events ---------------------------------------------------------------

    def _set_state(self, state: State, diag: Diag) -> None:
        changed = state != self.state
        self.state = state
        self.diag = diag
        if state in (State.DOWN, State.ADMIN_DOWN):
            self.polling = False
            self.min_tx, self.min_rx = self.cfg_min_tx, self.cfg_min_rx
        self._note_forwarding()
        if changed and self.last_tx is not None:
            # the interval may have shrunk (Up: no more 1 s floor); never wait past the new one
            self.next_tx = min(self.next_tx, self._next_after(self.last_tx))

    def _note_forwarding(self) -> None:
        fwd = self.forwarding
        if fwd != self._forwarding:
            self._forwarding = fwd
            self.flaps += 1

    def _next_after(self, t: float) -> float:
        low = 10 if self.detect_mult == 1 else 0
        jitter = self.rng.randint(low, 25)
        return t + self.tx_interval() * (100 - jitter) / 100 / 1e6

    def receive(self, p: Bfd, now: float) -> RxDrop | None:
        """Take a control packet the codec accepted; None, or why it was discarded (§6.8.6)."""
        if p.auth:
            return self._drop(RxDrop.AUTH)
        if p.your_disc and p.your_disc != self.local_disc:
            return self._drop(RxDrop.YOUR_DISC)
        self.rx_packets += 1
        self.remote_disc = p.my_disc
        self.remote_state = p.state
        self.remote_diag = p.diag
        self.remote_mult = p.detect_mult
        self.remote_min_tx = p.desired_min_tx
        old_rx = self.remote_min_rx
        self.remote_min_rx = p.required_min_rx
        if p.final and self.polling:
            self.polling = False
            self.min_tx, self.min_rx = self.cfg_min_tx, self.cfg_min_rx
        if p.poll:
            self.final_due = True
        self.last_rx = now
        if self.state == State.ADMIN_DOWN:
            return self._drop(RxDrop.ADMIN_DOWN)
        if p.state == State.ADMIN_DOWN:
            if self.state != State.DOWN:
                self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN)
        elif self.state == State.DOWN:
            if p.state == State.DOWN:
                self._set_state(State.INIT, self.diag)
            elif p.state == State.INIT:
                self._set_state(State.UP, Diag.NONE)
        elif self.state == State.INIT:
            if p.state in (State.INIT, State.UP):
                self._set_state(State.UP, Diag.NONE)
        elif p.state == State.DOWN:  # we are Up
            self._set_state(State.DOWN, Diag.NEIGHBOR_DOWN)
        self._note_forwarding()  # a path-down diagnostic changes it too
        detect = self.detection_time()
        self.detect_deadline = now + detect / 1e6 if detect else None
        if self.remote_min_rx != old_rx and old_rx and self.remote_min_rx:
            # §6.8.7: a changed required min RX takes effect on the next packet
            self.next_tx = min(self.next_tx, now + self.tx_interval() / 1e6)
        return None

    def _drop(self, why: RxDrop) -> RxDrop:
        self.drops[why] = self.drops.get(why, 0) + 1
        return why

    def expire(self, now: float) -> bool:
        """Go Down if the detection time passed in Init or Up; True when that happened."""
        if (
            self.state in (State.INIT, State.UP)
            and self.detect_deadline is not None
            and now >= self.detect_deadline
        ):
            self._set_state(State.DOWN, Diag.EXPIRED)
            self.remote_disc = 0
            self.remote_state = State.DOWN
            self.remote_min_rx = 1
            self.remote_min_tx = 0
            self.detect_deadline = None
            return True
        return False

    def due(self, now: float) -> bool:
        """Whether a packet should go out now (periodic, or a Final owed to the peer)."""
        if self.final_due:
            return True
        if self.remote_min_rx == 0:
            return False
        return now >= self.next_tx

    def next_wake(self) -> float | None:
        """The earliest time `due` or `expire` may change; None when nothing is pending."""
        times = []
        if self.final_due:
            return self.last_rx if self.last_rx is not None else self.next_tx
        if self.remote_min_rx:
            times.append(self.next_tx)
        if self.state in (State.INIT, State.UP) and self.detect_deadline is not None:
            times.append(self.detect_deadline)
        return min(times) if times else None

    def transmit(self, now: float) -> Bfd:
        """The packet to send now; schedules the next periodic one."""
        final = self.final_due
        self.final_due = False
        p = Bfd(
            state=self.state,
            my_disc=self.local_disc,
            your_disc=self.remote_disc,
            diag=self.diag,
            detect_mult=self.detect_mult,
            desired_min_tx=self.advertised_min_tx(),
            required_min_rx=self.advertised_min_rx(),
            required_min_echo_rx=0,
            poll=self.polling and not final,
            final=final,
        )
        self.tx_packets += 1
        self.last_tx = now
        self.next_tx = self._next_after(now)
        return p

    # -- configuration --------------------------------------------------------

    def set_intervals(self, desired_min_tx: int, required_min_rx: int, now: float) -> None:
        """New timers: at once unless Up, else through a poll sequence (§6.8.3)."""
        self.cfg_min_tx = _interval("desired_min_tx", desired_min_tx)
        self.cfg_min_rx = _interval("required_min_rx", required_min_rx)
        if self.state != State.UP:
            self.min_tx, self.min_rx = self.cfg_min_tx, self.cfg_min_rx
            return
        if (self.cfg_min_tx, self.cfg_min_rx) != (self.min_tx, self.min_rx):
            self.polling = True
            self.next_tx = now

    def admin_down(self, now: float) -> None:
        self._set_state(State.ADMIN_DOWN, Diag.ADMIN_DOWN)
        self.detect_deadline = None
        self.next_tx = now

    def admin_up(self, now: float) -> None:
        if self.state == State.ADMIN_DOWN:
            self._set_state(State.DOWN, Diag.NONE)
            self.next_tx = now

    def status(self) -> dict[str, Any]:
        """What `bfd show` reports (Open vSwitch's bfd_status keys, and the timers)."""
        return {
            "state": self.state.label,
            "forwarding": self.forwarding,
            "diagnostic": self.diag.label,
            "remote_state": self.remote_state.label,
            "remote_diagnostic": self.remote_diag.label,
            "flap_count": self.flaps,
            "local_disc": self.local_disc,
            "remote_disc": self.remote_disc,
            "tx_interval_us": self.tx_interval(),
            "detect_time_us": self.detection_time(),
            "rx_packets": self.rx_packets,
            "tx_packets": self.tx_packets,
        }


# -- the switch's sessions ------------------------------------------------------


@dataclass(slots=True)
class _Peer:
    port: Port  # the tunnel port the session runs on
    ip: int  # the peer's underlay address
    session: Session
    udp_src: int
    seen: tuple[State, bool]  # state and forwarding last reported through on_change


class Monitor:
    """The BFD sessions of one switch, one per (tunnel port, peer underlay address).

    The I/O around `Session`: `take` is offered every frame a tunnel port
    decapsulated with key 0 and keeps the BFD ones (they never reach the
    pipeline, as in Open vSwitch with `check_tnl_key`); `run` expires
    sessions and sends what is due, each control packet encapsulated with key
    0 (no Geneve option) from the port's local address to the peer's;
    `next_wake` says when `run` is next needed.  `on_change(port, peer,
    session)` is called when a session's state or forwarding changes; `wake`
    when something must go out before `next_wake` said (a Final owed, a new
    session).  A frame that cannot be used is counted in `drops` by reason.
    """

    def __init__(self, mac: int, rng: random.Random | None = None) -> None:
        self.mac = mac  # the inner Ethernet source of our control packets
        self.rng = rng or random.Random()
        self.peers: dict[tuple[str, int], _Peer] = {}
        self.by_disc: dict[int, _Peer] = {}
        self.drops: dict[str, int] = {}
        self.on_change: Callable[[str, int, Session], None] | None = None
        self.wake: Callable[[], None] | None = None
        # isolation: the sessions Up at least once since added; whether none is Up now
        # though one was; told to `on_isolated` when it changes
        self.ever_up: set[tuple[str, int]] = set()
        self.isolated = False
        self.on_isolated: Callable[[bool], None] | None = None
        self._next_udp = 0
        self._ident = 0

    def add(
        self,
        port: Port,
        peer: int,
        now: float,
        *,
        desired_min_tx: int = 100_000,
        required_min_rx: int = 100_000,
        detect_mult: int = 3,
    ) -> Session:
        """A session to `peer` over `port` (new, or the existing one with new timers)."""
        if not port.config.tunnel or not port.config.local_ip:
            raise BfdConfigError(f"bfd port: {port.name!r} is not a tunnel port with a local_ip")
        if not 0 < peer < 1 << 32 or peer == port.config.local_ip:
            raise BfdConfigError(
                f"bfd peer: {ip4_str(peer) if 0 <= peer < 1 << 32 else peer} is not a remote address"
            )
        old = self.peers.get((port.name, peer))
        if old is not None:
            s = old.session
            s.detect_mult = _mult(detect_mult)
            s.set_intervals(desired_min_tx, required_min_rx, now)
            self._poke()
            return s
        disc = self.rng.randrange(1, 1 << 32)
        while disc in self.by_disc:
            disc = self.rng.randrange(1, 1 << 32)
        s = Session(
            disc,
            now,
            desired_min_tx=desired_min_tx,
            required_min_rx=required_min_rx,
            detect_mult=detect_mult,
            rng=self.rng,
        )
        # RFC 5881 §4: one source port per session, 49152..65535
        udp_src = 49152 + self._next_udp % 16384
        self._next_udp += 1
        p = _Peer(port, peer, s, udp_src, (s.state, s.forwarding))
        self.peers[(port.name, peer)] = p
        self.by_disc[disc] = p
        self._poke()
        return s

    def remove(self, port_name: str, peer: int) -> None:
        p = self.peers.pop((port_name, peer), None)
        if p is None:
            raise BfdConfigError(f"bfd peer: no session to {ip4_str(peer)} on {port_name!r}")
        del self.by_disc[p.session.local_disc]
        self.ever_up.discard((port_name, peer))
        self._isolation()

    def _isolation(self) -> None:
        """Reevaluate `isolated`: a session was Up since added, and none is now."""
        up = any(p.session.state == State.UP for p in self.peers.values())
        now = bool(self.ever_up) and not up
        if now != self.isolated:
            self.isolated = now
            if self.on_isolated is not None:
                self.on_isolated(now)

    def forget_port(self, port_name: str) -> None:
        """Drop the sessions of a port that is gone."""
        for key in [k for k in self.peers if k[0] == port_name]:
            self.remove(*key)

    def _poke(self) -> None:
        if self.wake is not None:
            self.wake()

    def _drop(self, why: str) -> None:
        self.drops[why] = self.drops.get(why, 0) + 1

    def _report(self, p: _Peer) -> None:
        s = p.session
        now = (s.state, s.forwarding)
        if now != p.seen:
            p.seen = now
            if s.state == State.UP:
                self.ever_up.add((p.port.name, p.ip))
            self._isolation()
            if self.on_change is not None:
                self.on_change(p.port.name, p.ip, s)

    def take(self, port: Port, src: int, inner: bytes, now: float) -> bool:
        """Whether `inner` (decapsulated from `src` with key 0) was a BFD frame, now consumed."""
        if not is_bfd(inner):
            return False
        try:
            f = parse_frame(inner)
        except BfdError as e:
            self._drop(f"bad_{e.field}")
            return True
        if f.ttl != 255:  # RFC 5881 §5 (GTSM): only one hop away
            self._drop("bad_ttl")
            return True
        pkt = f.packet
        p = self.by_disc.get(pkt.your_disc) if pkt.your_disc else self.peers.get((port.name, src))
        if p is None or p.port is not port or p.ip != src:
            self._drop("no_session")
            return True
        why = p.session.receive(pkt, now)
        if why is not None:
            self._drop(why.name.lower())
        self._report(p)
        if p.session.final_due:
            self._poke()
        return True

    def run(self, now: float) -> int:
        """Expire sessions and send what is due; how many control packets went out."""
        sent = 0
        for p in list(self.peers.values()):
            s = p.session
            if s.expire(now):
                self._report(p)
            if not s.due(now):
                continue
            pkt = s.transmit(now)
            cfg = p.port.config
            inner = frame(pkt, eth_src=self.mac, udp_src=p.udp_src)
            local = cfg.local_ip or 0
            outer = encap.Outer(local, p.ip, 0, p.udp_src, (), udp_csum=cfg.udp_csum)
            self._ident = (self._ident + 1) & 0xFFFF
            dev: Any = p.port.device
            if dev.send_ip(p.ip, encap.encap(cfg.kind, inner, outer, self._ident)):
                sent += 1
            else:
                self._drop("tx_failed")
        return sent

    def next_wake(self) -> float | None:
        times = [t for p in self.peers.values() if (t := p.session.next_wake()) is not None]
        return min(times) if times else None

    def show(self) -> list[dict[str, Any]]:
        """Every session's status, by port and peer."""
        return [
            {"port": name, "peer": ip4_str(ip), **p.session.status()}
            for (name, ip), p in sorted(self.peers.items())
        ]
