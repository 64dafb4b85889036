"""NAT in the connection tracker, with a stepped clock.

Each translated frame is rewritten with the tracker's answer (`packet.nat`)
and handed to scapy: addresses, ports and every checksum are judged by it.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPerror6,
    IPv6,
)
from scapy.layers.inet6 import (
    UDPerror as UDPerror6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from tests.checksums import bad_checksums
from vnet.datapath.conntrack import (
    DNAT,
    EST,
    NEW,
    REL,
    RPL,
    SNAT,
    TRK,
    CtResult,
    Tracker,
    format_conn,
)
from vnet.datapath.ctnat import NatRange, nat_range
from vnet.packet import flowkey as fk
from vnet.packet.addr import ip4_int
from vnet.packet.nat import rewrite
from vnet.pipeline.actions import Nat, parse_action

A, A2, B, X = "10.0.0.1", "10.0.0.3", "10.0.0.2", "192.0.2.1"
A6, B6, X6 = "fd00::1", "fd00::2", "fd00:ffff::1"
APPLY = NatRange()  # `nat` without arguments: a connection's translation


def eth(p: Packet) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p)


def nat(text: str) -> NatRange:
    ct = parse_action(f"ct(commit,{text})")
    assert ct.nat is not None  # type: ignore[attr-defined]
    return nat_range(ct.nat)  # type: ignore[attr-defined]


def track(
    ct: Tracker,
    p: Packet,
    now: float = 0.0,
    n: NatRange | None = None,
    commit: bool = False,
    zone: int = 0,
    force: bool = False,
) -> tuple[CtResult, Packet]:
    """The tracker's answer for frame `p`, and the frame as translated by it."""
    frame = eth(p)
    key = fk.extract(frame, 1)
    r = ct.process(frame, key, zone, now, commit=commit, nat=n, force=force)
    buf = bytearray(frame)
    if r.rewrite is not None:
        rewrite(buf, key, r.rewrite)
    out = Ether(bytes(buf))
    assert bad_checksums(bytes(buf)) == []
    return r, out


def syn(src: str = A, sport: int = 40000, dst: str = B, dport: int = 80) -> Packet:
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=100) / b"hi"


def test_source_nat_translates_both_ways() -> None:
    ct = Tracker(seed=1)
    r, out = track(ct, syn(), n=nat(f"nat(src={X})"), commit=True)
    assert r.state == TRK | NEW | SNAT
    assert (out[IP].src, out[TCP].sport, out[IP].dst, out[TCP].dport) == (X, 40000, B, 80)
    # the reply comes back to the translated address and is untranslated by `ct(nat)`
    back = IP(src=B, dst=X) / TCP(sport=80, dport=40000, flags="SA", seq=500, ack=101)
    r, out = track(ct, back, 1.0, APPLY)
    assert r.state == TRK | EST | RPL | DNAT
    assert (out[IP].dst, out[TCP].dport, out[IP].src) == (A, 40000, B)
    assert r.orig == (0, 4, 6, ip4_int(A), ip4_int(B), 40000, 80)
    # later packets of the original direction: the same translation
    r, out = track(ct, IP(src=A, dst=B) / TCP(sport=40000, dport=80, flags="A", seq=101, ack=501),
                   2.0, APPLY)  # fmt: skip
    assert r.state == TRK | EST | SNAT and out[IP].src == X
    (conn,) = ct.conns()
    assert conn.nat == "src" and conn.reply == (0, 4, 6, ip4_int(B), ip4_int(X), 80, 40000)
    line = format_conn(conn, 2.0)
    assert f"orig=(src={A},dst={B},sport=40000,dport=80),reply=(src={B},dst={X}," in line


def test_ct_without_nat_matches_the_connection_as_it_is() -> None:
    ct = Tracker(seed=1)
    track(ct, syn(), n=nat(f"nat(src={X})"), commit=True)
    back = IP(src=B, dst=X) / TCP(sport=80, dport=40000, flags="SA", seq=500, ack=101)
    r, out = track(ct, back, 1.0)
    assert r.state == TRK | EST | RPL and r.rewrite is None and out[IP].dst == X


def test_a_source_port_in_use_moves_within_its_class() -> None:
    ct = Tracker(seed=3)
    n = nat(f"nat(src={X})")
    _, o1 = track(ct, syn(A), n=n, commit=True)
    _, o2 = track(ct, syn(A2), n=n, commit=True)  # same port, same destination
    assert o1[TCP].sport == 40000 and o2[IP].src == X
    assert o2[TCP].sport != 40000 and 1024 <= o2[TCP].sport <= 65535
    low = track(ct, syn(A2, 700, dport=81), n=n, commit=True)[1]
    assert low[TCP].sport == 700  # free: kept
    low2 = track(ct, syn(A, 700, dport=81), n=n, commit=True)[1]
    assert 600 <= low2[TCP].sport <= 1023 and low2[TCP].sport != 700
    replies = {c.reply for c in ct.conns()}
    assert len(replies) == 4  # collision-free


def test_address_and_port_ranges_and_exhaustion() -> None:
    ct = Tracker(seed=5)
    n = nat("nat(src=192.0.2.10-192.0.2.11:1000-1001)")
    seen = set()
    for i in range(4):
        r, out = track(ct, syn(f"10.0.0.{10 + i}"), n=n, commit=True)
        assert r.drop is None
        seen.add((out[IP].src, out[TCP].sport))
    assert seen == {(f"192.0.2.{a}", p) for a in (10, 11) for p in (1000, 1001)}
    r, _ = track(ct, syn("10.0.0.99"), n=n, commit=True)
    assert r.drop == "ct_nat_exhausted" and r.rewrite is None
    assert len(ct) == 4 and ct.stats(0)["drops"] == {"ct_nat_exhausted": 1}
    # an expired connection frees its tuple
    r, out = track(ct, syn("10.0.0.99"), 1000.0, n, commit=True)
    assert r.drop is None and (out[IP].src, out[TCP].sport) in seen


def test_the_original_port_is_kept_when_it_is_in_the_range() -> None:
    ct = Tracker(seed=5)
    _, out = track(ct, syn(sport=1500), n=nat(f"nat(src={X}:1000-2000)"), commit=True)
    assert out[TCP].sport == 1500
    _, out = track(ct, syn(sport=40000), n=nat(f"nat(src={X}:1000-2000)"), commit=True)
    assert 1000 <= out[TCP].sport <= 2000


def test_hash_is_per_tuple_persistent_is_per_source_random_is_random() -> None:
    def pick(flags: str, seed: int, src: str, dport: int) -> str:
        ct = Tracker(seed=seed)
        n = nat(f"nat(src=192.0.2.0-192.0.2.255{flags})")
        return str(track(ct, syn(src, dport=dport), n=n, commit=True)[1][IP].src)

    by_hash = {pick("", 1, A, p) for p in range(80, 120)}
    assert len(by_hash) > 10  # the destination port moves the address
    assert pick("", 1, A, 80) == pick(",hash", 1, A, 80)
    persistent = {pick(",persistent", 1, A, p) for p in range(80, 120)}
    assert len(persistent) == 1  # one source, one address
    assert len({pick(",persistent", 1, f"10.0.1.{i}", 80) for i in range(40)}) > 10
    rnd = {pick(",random", s, A, 80) for s in range(40)}
    assert len(rnd) > 10 and pick(",random", 7, A, 80) == pick(",random", 7, A, 80)


def test_destination_nat_and_the_source_port_on_a_clash() -> None:
    ct = Tracker(seed=2)
    n = nat("nat(dst=10.0.0.9:8080)")
    r, out = track(ct, syn(A, 5000, "198.51.100.1", 80), n=n, commit=True)
    assert r.state == TRK | NEW | DNAT
    assert (out[IP].dst, out[TCP].dport, out[TCP].sport) == ("10.0.0.9", 8080, 5000)
    back = IP(src="10.0.0.9", dst=A) / TCP(sport=8080, dport=5000, flags="SA", seq=9, ack=101)
    r, out = track(ct, back, 1.0, APPLY)
    assert r.state == TRK | EST | RPL | SNAT
    assert (out[IP].src, out[TCP].sport) == ("198.51.100.1", 80)
    # another virtual address to the same server, from the same client port: the
    # reply tuples would clash, so the client's port moves
    r, out = track(ct, syn(A, 5000, "198.51.100.2", 80), 1.0, n, commit=True)
    assert out[IP].dst == "10.0.0.9" and out[TCP].sport != 5000
    back = IP(src="10.0.0.9", dst=A) / TCP(sport=8080, dport=out[TCP].sport, flags="SA", seq=9,
                                           ack=101)  # fmt: skip
    r, out = track(ct, back, 2.0, APPLY)
    assert (out[IP].src, out[TCP].dport) == ("198.51.100.2", 5000)


def test_ipv6_source_nat() -> None:
    ct = Tracker(seed=4)
    p = IPv6(src=A6, dst=B6) / TCP(sport=40000, dport=80, flags="S")
    r, out = track(ct, p, n=nat(f"nat(src=[{X6}])"), commit=True)
    assert out[IPv6].src == X6 and r.state == TRK | NEW | SNAT
    back = IPv6(src=B6, dst=X6) / TCP(sport=80, dport=40000, flags="SA", ack=1)
    r, out = track(ct, back, 1.0, APPLY)
    assert out[IPv6].dst == A6 and r.state & DNAT


def test_a_range_of_the_other_family_is_a_counted_drop() -> None:
    ct = Tracker()
    r, _ = track(ct, IPv6(src=A6, dst=B6) / UDP(), n=nat(f"nat(src={X})"), commit=True)
    assert r.drop == "ct_nat_family" and len(ct) == 0


@pytest.mark.parametrize("v6", [False, True], ids=["icmp", "icmpv6"])
def test_ping_identifier_is_translated_like_a_port(v6: bool) -> None:
    ct = Tracker(seed=9)
    src, src2, dst, x = (A6, "fd00::3", B6, X6) if v6 else (A, A2, B, X)
    n = nat(f"nat(src=[{x}])" if v6 else f"nat(src={x})")
    L3, Echo, Reply = (IPv6, ICMPv6EchoRequest, ICMPv6EchoReply) if v6 else (IP, ICMP, ICMP)
    ping = L3(src=src, dst=dst) / (Echo(id=7, seq=1) if v6 else ICMP(type=8, id=7, seq=1))
    ping2 = L3(src=src2, dst=dst) / (Echo(id=7, seq=1) if v6 else ICMP(type=8, id=7, seq=1))
    _, o1 = track(ct, ping, n=n, commit=True)
    _, o2 = track(ct, ping2, n=n, commit=True)
    assert o1[L3].src == x and o1[Echo].id == 7
    assert o2[L3].src == x and o2[Echo].id != 7  # the identifier in use moves
    pong = L3(src=dst, dst=x) / (
        Reply(id=o2[Echo].id, seq=1) if v6 else ICMP(type=0, id=o2[Echo].id)
    )
    r, out = track(ct, pong, 1.0, APPLY)
    assert r.state == TRK | EST | RPL | DNAT
    assert out[L3].dst == src2 and out[Reply].id == 7


def test_an_icmp_error_for_a_translated_connection_is_translated_inside() -> None:
    ct = Tracker(seed=1)
    _, sent = track(ct, syn(), n=nat(f"nat(src={X}:2000)"), commit=True)
    quoted = bytes(sent[IP])[:28]  # what a router quotes: the IP header and 8 bytes
    err = IP(src="198.51.100.1", dst=X) / ICMP(type=3, code=1) / quoted
    r, out = track(ct, err, 1.0, APPLY)
    assert r.state == TRK | REL | RPL | DNAT
    assert out[IP].dst == A and out[IP].src == "198.51.100.1"
    assert out[IPerror].src == A and out[IPerror].dst == B
    assert out[TCPerror].sport == 40000 and out[TCPerror].dport == 80
    # without nat: related, as it is
    r, out = track(ct, err, 1.0)
    assert r.state == TRK | REL | RPL and out[IP].dst == X


def test_an_icmp_error_from_the_inside_is_translated_on_its_way_out() -> None:
    """An error the original side sends about a reply: the mirror case."""
    ct = Tracker(seed=1)
    track(ct, IP(src=A, dst=B) / UDP(sport=4000, dport=53), n=nat(f"nat(src={X}:2000)"),
          commit=True)  # fmt: skip
    reply = IP(src=B, dst=A) / UDP(sport=53, dport=4000) / b"answer"  # as A saw it
    err = IP(src=A, dst=B) / ICMP(type=3, code=3) / bytes(reply)
    r, out = track(ct, err, 1.0, APPLY)
    assert r.state == TRK | REL | SNAT
    assert out[IP].src == X and out[IPerror].dst == X and out[IPerror].payload.dport == 2000


def test_an_icmpv6_error_for_a_translated_connection() -> None:
    ct = Tracker(seed=1)
    p = IPv6(src=A6, dst=B6) / UDP(sport=4000, dport=53) / b"q"
    _, sent = track(ct, p, n=nat(f"nat(src=[{X6}]:2000)"), commit=True)
    err = IPv6(src="fd00:9::1", dst=X6) / ICMPv6DestUnreach(code=3) / bytes(sent[IPv6])
    r, out = track(ct, err, 1.0, APPLY)
    assert r.state == TRK | REL | RPL | DNAT
    assert out[IPv6].dst == A6 and out[IPerror6].src == A6
    assert out[UDPerror6].sport == 4000


def test_a_packet_translated_in_this_zone_is_not_translated_again() -> None:
    """ct(table=1,nat) translated it; a ct(commit,nat(...)) or ct in the same zone
    finds the connection by the original tuple the packet carries."""
    ct = Tracker(seed=1)
    n = nat(f"nat(src={X})")
    track(ct, syn(), n=n, commit=True, zone=3)
    ack = IP(src=A, dst=B) / TCP(sport=40000, dport=80, flags="A", seq=101)
    frame = eth(ack)
    r = ct.process(frame, fk.extract(frame, 1), 3, 1.0, nat=APPLY)
    assert r.state == TRK | NEW | SNAT and r.rewrite is not None
    buf = bytearray(frame)
    rewrite(buf, fk.extract(frame, 1), r.rewrite)
    s = fk.CT_STATE - fk.METADATA
    meta = [0] * (fk.KEY_LEN - fk.METADATA)
    meta[s : s + 11] = (r.state, 3, 0, 0, ip4_int(A), ip4_int(B), 0, 0, 6, 40000, 80)
    again = fk.extract(bytes(buf), 1, meta=tuple(meta))
    r2 = ct.process(bytes(buf), again, 3, 1.0, nat=n, commit=True)
    assert r2.rewrite is None and r2.state == TRK | NEW | SNAT and len(ct) == 1
    r3 = ct.process(bytes(buf), again, 3, 1.0)
    assert r3.state == TRK | NEW | SNAT and r3.orig == r.orig
    other = fk.extract(bytes(buf), 1, meta=tuple(meta[:s] + [r.state, 4] + meta[s + 2 :]))
    r4 = ct.process(bytes(buf), other, 4, 1.0)  # another zone: a packet it has never seen
    assert r4.state == TRK | NEW and r4.orig != r.orig


def test_force_starts_the_connection_again_from_the_other_side() -> None:
    ct = Tracker()
    track(ct, IP(src=A, dst=B) / UDP(sport=1, dport=2), commit=True)
    r, _ = track(ct, IP(src=B, dst=A) / UDP(sport=2, dport=1), 1.0, commit=True, force=True)
    assert r.state == TRK | NEW
    (conn,) = ct.conns()
    assert conn.orig[3] == ip4_int(B)
    r, _ = track(ct, IP(src=B, dst=A) / UDP(sport=2, dport=1), 2.0, commit=True, force=True)
    assert r.state == TRK | NEW  # the original direction: kept, not replied yet
    r, _ = track(ct, IP(src=A, dst=B) / UDP(sport=1, dport=2), 3.0)
    assert r.state == TRK | EST | RPL and len(ct) == 1


def test_a_plain_commit_onto_a_translated_tuple_is_refused() -> None:
    ct = Tracker(seed=1)
    track(ct, syn(), n=nat(f"nat(src={X})"), commit=True)
    # X itself opens X:40000 -> B:80: its reply tuple is the translated connection's
    r, _ = track(ct, syn(X), 1.0, commit=True)
    assert r.drop == "ct_nat_clash" and len(ct) == 1


def test_a_range_that_runs_backwards_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="runs backwards"):
        nat("nat(src=10.0.0.9-10.0.0.1)")
    with pytest.raises(ValueError, match="one family"):
        nat_range(Nat("src", "10.0.0.1", "fd00::1"))


def test_preview_changes_nothing() -> None:
    ct = Tracker(seed=1)
    key = fk.extract(eth(syn()), 1)
    rw, bits = ct.preview(key, 0, 0.0, nat(f"nat(src={X})"), commit=True)
    assert rw is not None and rw.src == ip4_int(X) and bits == SNAT and len(ct) == 0
    r, _ = track(ct, syn(), n=nat(f"nat(src={X})"), commit=True)
    assert r.rewrite == rw
    back = fk.extract(eth(IP(src=B, dst=X) / TCP(sport=80, dport=40000, flags="A")), 2)
    rw, bits = ct.preview(back, 0, 1.0, APPLY, commit=False)
    assert rw is not None and rw.dst == ip4_int(A) and bits == DNAT
    (conn,) = ct.conns()
    assert not conn.replied and conn.packets == [1, 0]  # nothing moved
