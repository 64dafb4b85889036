"""The connection tracker with a stepped clock: TCP, UDP, ICMP, zones, limits, timeouts."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from vnet.datapath.conntrack import (
    EST,
    INV,
    NEW,
    REL,
    RPL,
    TIMEOUTS,
    TRK,
    Tracker,
    format_conn,
)
from vnet.packet import flowkey as fk

A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "fd00::1", "fd00::2"


def eth(p: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p)


def run(ct: Tracker, frame: bytes, now: float, zone: int = 0, commit: bool = False) -> int:
    return ct.process(frame, fk.extract(frame, 1), zone, now, commit=commit).state


class Tcp:
    """Both ends of one TCP connection, with sequence numbers kept honest."""

    def __init__(self, ct: Tracker, sport: int = 40000, zone: int = 0) -> None:
        self.ct, self.sport, self.zone = ct, sport, zone
        self.seq = {0: 1000, 1: 5000}  # next sequence number per end (0: client)
        self.now = 0.0

    def frame(
        self, d: int, flags: str, data: bytes = b"", seq: int | None = None, ahead: int = 0
    ) -> bytes:
        s = (self.seq[d] if seq is None else seq) & 0xFFFFFFFF
        ack = (self.seq[1 - d] + ahead) & 0xFFFFFFFF if "A" in flags else 0
        src, dst = (A, B) if d == 0 else (B, A)
        sp, dp = (self.sport, 80) if d == 0 else (80, self.sport)
        return eth(
            IP(src=src, dst=dst)
            / TCP(sport=sp, dport=dp, flags=flags, seq=s, ack=ack, window=65535)
            / data
        )

    def send(self, d: int, flags: str, data: bytes = b"", commit: bool = False) -> int:
        f = self.frame(d, flags, data)
        self.seq[d] += len(data) + ("S" in flags) + ("F" in flags)
        return run(self.ct, f, self.now, self.zone, commit)

    def handshake(self) -> None:
        assert self.send(0, "S", commit=True) == TRK | NEW
        assert self.send(1, "SA") == TRK | EST | RPL
        assert self.send(0, "A") == TRK | EST


def test_tcp_handshake_data_and_close() -> None:
    ct = Tracker()
    c = Tcp(ct)
    c.handshake()
    assert c.send(0, "PA", b"GET / HTTP/1.0\r\n\r\n") == TRK | EST
    assert c.send(1, "PA", b"x" * 1000) == TRK | EST | RPL
    (conn,) = ct.conns()
    assert conn.timeout == "tcp_established"
    assert c.send(0, "FA") == TRK | EST
    assert conn.timeout == "tcp_fin_wait"
    assert c.send(1, "FA") == TRK | EST | RPL
    assert c.send(0, "A") == TRK | EST
    assert conn.timeout == "tcp_time_wait"
    assert "protoinfo=(state=FIN_WAIT_2)" in format_conn(conn, c.now)


def test_uncommitted_new_leaves_nothing_and_a_reply_then_is_invalid() -> None:
    ct = Tracker()
    c = Tcp(ct)
    assert c.send(0, "S") == TRK | NEW
    assert len(ct) == 0
    assert c.send(1, "SA") == TRK | INV  # a SYN+ACK may not open a connection
    assert ct.drops == {"ct_invalid": 1}


def test_simultaneous_open() -> None:
    ct = Tracker()
    c = Tcp(ct)
    assert c.send(0, "S", commit=True) == TRK | NEW
    assert c.send(1, "S") == TRK | EST | RPL  # the other end's SYN crosses ours
    assert c.send(0, "SA") == TRK | EST
    assert c.send(1, "SA") == TRK | EST | RPL
    assert c.send(0, "A") == TRK | EST
    (conn,) = ct.conns()
    assert conn.peers is not None and {p.state for p in conn.peers} == {4}  # ESTABLISHED


def test_out_of_window_segments_and_forged_rst_are_invalid() -> None:
    ct = Tracker()
    c = Tcp(ct)
    c.handshake()
    far = c.frame(0, "PA", b"x" * 10, seq=c.seq[0] + 10_000_000)
    assert run(ct, far, 1.0) == TRK | INV
    behind = c.frame(1, "A", b"y", seq=c.seq[1] - 3_000_000)
    assert run(ct, behind, 1.0) == TRK | INV
    forged_rst = c.frame(1, "R", seq=c.seq[1] + 40_000)  # in the window, not exact
    assert run(ct, forged_rst, 1.0) == TRK | INV
    acks_the_future = c.frame(0, "A", ahead=10_000_000)  # more than a window ahead
    assert run(ct, acks_the_future, 1.0) == TRK | INV
    acks_the_past = c.frame(0, "A", ahead=-10_000_000)  # more than a window behind
    assert run(ct, acks_the_past, 1.0) == TRK | INV
    assert ct.drops["ct_invalid"] == 5
    (conn,) = ct.conns()
    assert conn.timeout == "tcp_established"  # none of them changed the connection
    assert c.send(0, "PA", b"still fine") == TRK | EST


def test_rst_closes_and_a_new_syn_reopens() -> None:
    ct = Tracker()
    c = Tcp(ct)
    c.handshake()
    assert c.send(1, "R") == TRK | EST | RPL
    (conn,) = ct.conns()
    assert conn.timeout == "tcp_close"
    c.now = TIMEOUTS["tcp_close"] + 1
    assert len(ct) == 1 and ct.expire(c.now) == 1 and len(ct) == 0
    c2 = Tcp(ct)
    c2.now = c.now
    c2.handshake()  # the same tuple opens again once the old entry is gone


def test_invalid_flag_combinations() -> None:
    ct = Tracker()
    c = Tcp(ct)
    for flags in ("SF", "SR", "F", "", "P"):
        assert run(ct, c.frame(0, flags), 0.0, commit=True) == TRK | INV, flags
    assert len(ct) == 0


def test_midstream_pickup_is_tracked_loosely() -> None:
    ct = Tracker()
    c = Tcp(ct)
    assert c.send(0, "PA", b"data", commit=True) == TRK | NEW
    assert c.send(1, "A") == TRK | EST | RPL
    assert c.send(0, "PA", b"more") == TRK | EST


def test_tcp_timeouts_every_state() -> None:
    ct = Tracker(timeouts={"tcp_syn_sent": 5})
    c = Tcp(ct)
    assert c.send(0, "S", commit=True) == TRK | NEW
    (conn,) = ct.conns()
    assert (conn.timeout, conn.expires) == ("tcp_syn_sent", 5)
    c.now = 5.0
    assert c.send(1, "SA") == TRK | INV  # expired: gone, and a SYN+ACK opens nothing
    assert len(ct) == 0
    seen = []
    c = Tcp(ct, sport=40001)
    c.now = 10.0
    for d, flags in ((0, "S"), (1, "SA"), (0, "A"), (0, "FA"), (1, "A"), (1, "FA"), (0, "A")):
        c.send(d, flags, commit=True)
        (conn,) = ct.conns()
        seen.append(conn.timeout)
        assert conn.expires == c.now + ct.timeouts[conn.timeout]
    assert seen == [
        "tcp_syn_sent",
        "tcp_syn_recv",
        "tcp_established",
        "tcp_fin_wait",
        "tcp_fin_wait",
        "tcp_last_ack",
        "tcp_time_wait",
    ]


def test_udp_becomes_a_stream_on_reply_and_expires() -> None:
    ct = Tracker()
    out = eth(IP(src=A, dst=B) / UDP(sport=5000, dport=53) / b"q")
    back = eth(IP(src=B, dst=A) / UDP(sport=53, dport=5000) / b"r")
    assert run(ct, out, 0.0, commit=True) == TRK | NEW
    assert run(ct, out, 1.0) == TRK | NEW  # not answered yet
    (conn,) = ct.conns()
    assert conn.expires == 1.0 + TIMEOUTS["udp"]
    assert run(ct, back, 2.0) == TRK | EST | RPL
    assert conn.expires == 2.0 + TIMEOUTS["udp_stream"]
    assert run(ct, out, 3.0) == TRK | EST
    assert run(ct, out, 3.0 + TIMEOUTS["udp_stream"]) == TRK | NEW  # expired: new again


def test_icmp_echo_and_related_errors_v4_and_v6() -> None:
    ct = Tracker()
    req = eth(IP(src=A, dst=B) / ICMP(type=8, id=7, seq=1))
    rep = eth(IP(src=B, dst=A) / ICMP(type=0, id=7, seq=1))
    assert run(ct, req, 0.0, commit=True) == TRK | NEW
    assert run(ct, rep, 0.0) == TRK | EST | RPL
    assert run(ct, eth(IP(src=B, dst=A) / ICMP(type=0, id=8)), 0.0) == TRK | NEW
    udp = IP(src=A, dst=B) / UDP(sport=5000, dport=53)
    assert run(ct, eth(udp / b"q"), 0.0, commit=True) == TRK | NEW
    err = eth(IP(src=B, dst=A) / ICMP(type=3, code=3) / IPerror(bytes(udp / b"q")))
    assert run(ct, err, 0.0) == TRK | REL | RPL
    unknown = eth(
        IP(src=B, dst=A) / ICMP(type=3, code=3) / IPerror(src=A, dst=B) / UDPerror(sport=1, dport=2)
    )
    assert run(ct, unknown, 0.0) == TRK | INV
    tcp = IP(src=A, dst=B) / TCP(sport=1, dport=2, flags="S")
    ttl = eth(IP(src="10.9.9.9", dst=A) / ICMP(type=11) / IPerror(bytes(tcp)))
    assert run(ct, ttl, 0.0) == TRK | INV  # the TCP connection was never committed
    assert run(ct, eth(tcp), 0.0, commit=True) == TRK | NEW
    assert run(ct, ttl, 0.0) == TRK | REL | RPL
    req6 = eth(IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=9))
    rep6 = eth(IPv6(src=B6, dst=A6) / ICMPv6EchoReply(id=9))
    assert run(ct, req6, 0.0, commit=True) == TRK | NEW
    assert run(ct, rep6, 0.0) == TRK | EST | RPL
    u6 = IPv6(src=A6, dst=B6) / UDP(sport=7, dport=8) / b"z"
    assert run(ct, eth(u6), 0.0, commit=True) == TRK | NEW
    err6 = eth(IPv6(src=B6, dst=A6) / ICMPv6DestUnreach() / bytes(u6))
    assert run(ct, err6, 0.0) == TRK | REL | RPL
    # ...and a reply's error travels the original way
    back6 = IPv6(src=B6, dst=A6) / UDP(sport=8, dport=7) / b"y"
    assert run(ct, eth(back6), 0.0) == TRK | EST | RPL
    err6b = eth(IPv6(src=A6, dst=B6) / ICMPv6DestUnreach() / bytes(back6))
    assert run(ct, err6b, 0.0) == TRK | REL


def test_zones_are_kept_apart() -> None:
    ct = Tracker()
    out = eth(IP(src=A, dst=B) / UDP(sport=1, dport=2))
    back = eth(IP(src=B, dst=A) / UDP(sport=2, dport=1))
    assert run(ct, out, 0.0, zone=1, commit=True) == TRK | NEW
    assert run(ct, back, 0.0, zone=2) == TRK | NEW  # zone 2 knows nothing of it
    assert run(ct, back, 0.0, zone=1) == TRK | EST | RPL
    assert [c.zone for c in ct.conns(zone=1)] == [1] and list(ct.conns(zone=2)) == []
    assert ct.flush(zone=2) == 0 and ct.flush(zone=1) == 1 and len(ct) == 0


def test_limits_total_and_per_zone() -> None:
    ct = Tracker(limit=3, zone_limits={5: 1})

    def udp(i: int, zone: int) -> object:
        f = eth(IP(src=A, dst=B) / UDP(sport=1000 + i, dport=2))
        return ct.process(f, fk.extract(f, 1), zone, 0.0, commit=True)

    assert udp(0, 5).drop is None
    r = udp(1, 5)
    assert r.drop == "ct_limit" and r.state == TRK | NEW  # type: ignore[attr-defined]
    assert udp(2, 0).drop is None and udp(3, 0).drop is None  # type: ignore[attr-defined]
    assert udp(4, 0).drop == "ct_limit"  # type: ignore[attr-defined]
    assert len(ct) == 3 and ct.drops == {"ct_limit": 2}
    assert ct.stats(0.0)["by_zone"] == {0: 2, 5: 1}


def test_what_cannot_be_tracked_is_invalid_and_counted() -> None:
    ct = Tracker()
    arp = eth(ARP(op=1, psrc=A, pdst=B))
    frag = eth(IP(src=A, dst=B, flags="MF", proto=17) / (b"\x00" * 16))
    router_sol = eth(IP(src=A, dst=B) / ICMP(type=10))
    for f in (arp, frag, router_sol):
        assert run(ct, f, 0.0, commit=True) == TRK | INV
    assert ct.drops == {"ct_not_ip": 1, "ct_fragment": 1, "ct_icmp_type": 1}
    assert len(ct) == 0


def test_mark_and_label_are_kept_with_the_connection() -> None:
    ct = Tracker()
    out = eth(IP(src=A, dst=B) / UDP(sport=1, dport=2))
    back = eth(IP(src=B, dst=A) / UDP(sport=2, dport=1))
    k = fk.extract(out, 1)
    r = ct.process(out, k, 0, 0.0, commit=True, mark=(0x5, 0xF), label=(1 << 100, 1 << 100))
    assert (r.mark, r.label) == (5, 1 << 100)
    r = ct.process(back, fk.extract(back, 2), 0, 0.0)
    assert (r.state, r.mark, r.label) == (TRK | EST | RPL, 5, 1 << 100)
    assert r.orig is not None and r.orig[3:] == (0x0A000001, 0x0A000002, 1, 2)


def test_bad_timeout_name_is_refused() -> None:
    with pytest.raises(ValueError, match="tcp_establshed"):
        Tracker(timeouts={"tcp_establshed": 1})
