"""The BFD session state machine (RFC 5880 §6.2, §6.5, §6.8) on an injected clock."""

from __future__ import annotations

import random

import pytest

from vnet.datapath.bfd import RxDrop, Session
from vnet.packet import bfd as codec
from vnet.packet.bfd import Bfd, Diag, State


def pair(now: float = 0.0, **kw: int) -> tuple[Session, Session]:
    return (
        Session(1, now, rng=random.Random(1), **kw),
        Session(2, now, rng=random.Random(2), **kw),
    )


def wire(p: Bfd) -> Bfd:
    return codec.parse(codec.build(p))  # every packet goes through the codec


def run(
    a: Session, b: Session, t0: float, t1: float, *, step: float = 0.001, cut: bool = False
) -> float:
    """Advance both sessions from t0 to t1; `cut` drops everything b sends."""
    t = t0
    while t < t1:
        for s, peer, lost in ((a, b, False), (b, a, cut)):
            if s.due(t):
                p = s.transmit(t)
                if not lost:
                    peer.receive(wire(p), t)
            s.expire(t)
        t = round(t + step, 6)
    return t


def test_three_way_bring_up() -> None:
    a, b = pair()
    assert a.state is State.DOWN and a.due(0.0)
    p = a.transmit(0.0)
    assert p.state is State.DOWN and p.your_disc == 0 and p.my_disc == 1
    assert p.desired_min_tx == 1_000_000  # §6.8.3: at least 1 s while not Up
    b.receive(wire(p), 0.0)
    assert b.state is State.INIT and b.remote_disc == 1
    q = b.transmit(0.0)
    assert q.state is State.INIT and q.your_disc == 1
    a.receive(wire(q), 0.0)
    assert a.state is State.UP and a.forwarding
    b.receive(wire(a.transmit(0.0)), 0.0)
    assert b.state is State.UP and b.forwarding
    assert a.transmit(0.0).desired_min_tx == 100_000  # fast once Up
    assert a.flaps == 1 and b.flaps == 1


def test_up_sessions_exchange_at_the_negotiated_rate() -> None:
    a, b = pair(desired_min_tx=100_000, required_min_rx=100_000)
    run(a, b, 0.0, 3.0)
    assert a.state is State.UP and b.state is State.UP
    sent = a.tx_packets
    run(a, b, 3.0, 4.0)
    # 100 ms less 0-25 % jitter: between 10 and 14 packets a second
    assert 10 <= a.tx_packets - sent <= 14
    assert a.detection_time() == 300_000


def test_tx_interval_is_the_larger_of_ours_and_the_peers_min_rx() -> None:
    a = Session(1, 0.0, desired_min_tx=100_000, required_min_rx=100_000, rng=random.Random(0))
    b = Session(2, 0.0, desired_min_tx=100_000, required_min_rx=400_000, rng=random.Random(0))
    run(a, b, 0.0, 3.0)
    assert a.state is State.UP
    assert a.tx_interval() == 400_000
    assert b.tx_interval() == 100_000
    # b's detection time: a's multiplier x max(b's min rx, a's tx)
    assert b.detection_time() == 3 * 400_000
    assert a.detection_time() == 3 * 100_000


def test_silent_peer_is_down_within_the_detection_time() -> None:
    a, b = pair(desired_min_tx=100_000, required_min_rx=100_000)
    t = run(a, b, 0.0, 3.0)
    assert a.state is State.UP
    last = t
    t = run(a, b, t, t + 1.0, cut=True)
    assert a.state is State.DOWN
    assert a.diag is Diag.EXPIRED and a.remote_disc == 0
    assert not a.forwarding and a.flaps == 2
    # when did it go down?  re-run step by step to find the moment
    a2, b2 = pair(desired_min_tx=100_000, required_min_rx=100_000)
    t2 = run(a2, b2, 0.0, 3.0)
    heard = a2.last_rx
    assert heard is not None
    while a2.state is State.UP:
        t2 = run(a2, b2, t2, round(t2 + 0.001, 6), cut=True)
    assert t2 - heard <= 0.3 + 0.002
    assert t2 - heard >= 0.3 - 0.002
    del last


def test_detection_deadline_not_reached_stays_up() -> None:
    a, b = pair()
    run(a, b, 0.0, 3.0)
    heard = a.last_rx
    assert heard is not None
    assert not a.expire(heard + 0.299)
    assert a.state is State.UP
    assert a.next_wake() is not None
    assert a.expire(heard + 0.3)
    assert a.state is State.DOWN


def test_peer_signals_down() -> None:
    a, b = pair()
    run(a, b, 0.0, 3.0)
    p = Bfd(state=State.DOWN, my_disc=2, your_disc=0, diag=Diag.EXPIRED)
    assert a.receive(p, 3.0) is None
    assert a.state is State.DOWN and a.diag is Diag.NEIGHBOR_DOWN
    # and it comes back: Down -> Init on the peer's Down, Up on its Init
    run(a, b, 3.0, 6.0)
    assert a.state is State.UP and b.state is State.UP


def test_admin_down_peer_takes_us_down_and_we_stay_down() -> None:
    a, b = pair()
    t = run(a, b, 0.0, 3.0)
    b.admin_down(t)
    assert b.state is State.ADMIN_DOWN and b.diag is Diag.ADMIN_DOWN
    t = run(a, b, t, t + 2.0)
    assert a.state is State.DOWN and a.diag is Diag.NEIGHBOR_DOWN
    assert b.state is State.ADMIN_DOWN
    assert b.drops.get(RxDrop.ADMIN_DOWN, 0) > 0  # b ignores what a says
    # a does not go Init on AdminDown packets
    assert a.remote_state is State.ADMIN_DOWN
    b.admin_up(t)
    assert b.state is State.DOWN and b.diag is Diag.NONE
    run(a, b, t, t + 3.0)
    assert a.state is State.UP and b.state is State.UP


def test_admin_down_peer_before_up_is_not_a_transition() -> None:
    a = Session(1, 0.0)
    a.receive(Bfd(state=State.ADMIN_DOWN, my_disc=9, diag=Diag.ADMIN_DOWN), 0.0)
    assert a.state is State.DOWN and a.diag is Diag.NONE


def test_init_goes_up_on_peer_up_and_init() -> None:
    for remote in (State.INIT, State.UP):
        a = Session(1, 0.0)
        a.receive(Bfd(state=State.DOWN, my_disc=9), 0.0)
        assert a.state is State.INIT
        a.receive(Bfd(state=remote, my_disc=9, your_disc=1), 0.0)
        assert a.state is State.UP


def test_down_ignores_peer_up() -> None:
    a = Session(1, 0.0)
    a.receive(Bfd(state=State.UP, my_disc=9, your_disc=1), 0.0)
    assert a.state is State.DOWN


def test_init_times_out_too() -> None:
    a = Session(1, 0.0)
    a.receive(Bfd(state=State.DOWN, my_disc=9, desired_min_tx=1_000_000), 0.0)
    assert a.state is State.INIT
    assert a.detection_time() == 3_000_000
    assert not a.expire(2.999)
    assert a.expire(3.0)
    assert a.state is State.DOWN and a.diag is Diag.EXPIRED


def test_wrong_discriminator_and_auth_are_discarded() -> None:
    a = Session(1, 0.0)
    assert a.receive(Bfd(state=State.INIT, my_disc=9, your_disc=77), 0.0) is RxDrop.YOUR_DISC
    assert a.receive(Bfd(state=State.DOWN, my_disc=9, auth=b"\x01\x03\x01"), 0.0) is RxDrop.AUTH
    assert a.state is State.DOWN and a.rx_packets == 0 and a.remote_disc == 0
    assert a.drops == {RxDrop.YOUR_DISC: 1, RxDrop.AUTH: 1}


def test_path_down_diagnostic_stops_forwarding() -> None:
    a, b = pair()
    run(a, b, 0.0, 3.0)
    a.receive(Bfd(state=State.UP, my_disc=2, your_disc=1, diag=Diag.CPATH_DOWN), 3.0)
    assert a.state is State.UP and not a.forwarding


def test_poll_is_answered_with_final() -> None:
    a, b = pair()
    t = run(a, b, 0.0, 3.0)
    b.receive(Bfd(state=State.UP, my_disc=1, your_disc=2, poll=True), t)
    assert b.due(t) and b.next_wake() is not None and b.next_wake() <= t  # type: ignore[operator]
    f = b.transmit(t)
    assert f.final and not f.poll
    assert not b.transmit(t).final  # only once


def test_poll_sequence_defers_new_intervals_until_final() -> None:
    a, b = pair()
    t = run(a, b, 0.0, 3.0)
    a.set_intervals(200_000, 500_000, t)
    assert a.polling and a.due(t)
    assert a.min_rx == 100_000  # not yet in force
    p = a.transmit(t)
    assert p.poll and p.desired_min_tx == 200_000 and p.required_min_rx == 500_000
    assert a.detection_time() == 300_000  # old values still used
    b.receive(wire(p), t)
    f = b.transmit(t)
    assert f.final
    a.receive(wire(f), t)
    assert not a.polling and a.min_rx == 500_000 and a.min_tx == 200_000
    assert a.detection_time() == 3 * 500_000
    run(a, b, t, t + 3.0)
    assert a.state is State.UP and b.state is State.UP
    assert b.tx_interval() == 500_000  # b slowed to what a now requires


def test_set_intervals_while_down_takes_effect_at_once() -> None:
    a = Session(1, 0.0)
    a.set_intervals(300_000, 300_000, 0.0)
    assert not a.polling and a.min_rx == 300_000


def test_nothing_periodic_when_peer_requires_zero_rx() -> None:
    a, b = pair()
    t = run(a, b, 0.0, 3.0)
    a.receive(Bfd(state=State.UP, my_disc=2, your_disc=1, required_min_rx=0), t)
    assert not a.due(t + 10.0)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"desired_min_tx": 0}, "desired_min_tx"),
        ({"required_min_rx": 1 << 32}, "required_min_rx"),
        ({"detect_mult": 0}, "detect_mult"),
        ({"detect_mult": 256}, "detect_mult"),
    ],
)
def test_bad_configuration_names_the_field(kw: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Session(1, 0.0, **kw)


def test_bad_discriminator_refused() -> None:
    with pytest.raises(ValueError, match="local_disc"):
        Session(0, 0.0)


def test_status_reports_ovs_keys() -> None:
    a, b = pair()
    run(a, b, 0.0, 3.0)
    st = a.status()
    assert st["state"] == "up" and st["forwarding"] is True
    assert st["remote_state"] == "up" and st["diagnostic"] == "none"
    assert st["remote_disc"] == 2 and st["detect_time_us"] == 300_000
