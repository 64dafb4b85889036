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
"""

from __future__ import annotations

import random
from enum import Enum
from typing import Any

from ..packet.bfd import Bfd, Diag, State

__all__ = ["MIN_INTERVAL_US", "RxDrop", "Session"]

SLOW_TX_US = 1_000_000  # §6.8.3: the floor of desired min TX while not Up
MIN_INTERVAL_US = 1_000  # 1 ms: the smallest interval a session is configured with
_PATH_DOWN = frozenset((Diag.PATH_DOWN, Diag.CPATH_DOWN, Diag.RCPATH_DOWN))


class RxDrop(Enum):
    """Why `receive` discarded a packet (after the codec's own checks)."""

    AUTH = "authentication not configured"
    YOUR_DISC = "your discriminator is not ours"
    ADMIN_DOWN = "session is administratively down"


def _interval(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"bfd {name}: {value!r} is not an integer (microseconds)")
    if not MIN_INTERVAL_US <= value < 1 << 32:
        raise ValueError(f"bfd {name}: {value} us out of range {MIN_INTERVAL_US}..4294967295")
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
            raise ValueError(f"bfd local_disc: {local_disc} out of range 1..4294967295")
        if (
            isinstance(detect_mult, bool)
            or not isinstance(detect_mult, int)
            or not 1 <= detect_mult <= 255
        ):
            raise ValueError(f"bfd detect_mult: {detect_mult!r} out of range 1..255")
        self.local_disc = local_disc
        self.detect_mult = detect_mult
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
        fwd = self.forwarding
        if fwd != self._forwarding:
            self._forwarding = fwd
            self.flaps += 1
        if changed and self.last_tx is not None:
            # the interval may have shrunk (Up: no more 1 s floor); never wait past the new one
            self.next_tx = min(self.next_tx, self._next_after(self.last_tx))

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
        self._set_state(self.state, self.diag)  # a path-down diagnostic changes forwarding
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
