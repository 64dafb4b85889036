"""The switch runs `ct` on every packet: a stateful firewall in plain OpenFlow.

The classic pipeline: untracked IP goes through the tracker (zone 1) and on
to table 1; there a new connection may start only from port a, established
traffic passes both ways, anything invalid is dropped.  Cached decisions
(the signature cache) must not skip the tracker: an out-of-window segment in
the middle of a stream is dropped like any other.
"""

from __future__ import annotations

from vnet.datapath.conntrack import EST, RPL, TRK
from vnet.packet import flowkey as fk

from .conftest import A, B, TwoPorts, tcp

FIREWALL = [
    "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1)",
    "table=0,priority=10,arp,actions=normal",
    "table=1,priority=10,in_port=1,ip,ct_state=+new+trk,actions=ct(commit,zone=1,exec(set_field:0x7->ct_mark)),output:2",
    "table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2",
    "table=1,priority=10,in_port=2,ip,ct_state=+est+trk,ct_mark=0x7,actions=output:1",
    "table=1,priority=20,ip,ct_state=+inv+trk,actions=drop",
]


def seg(d: int, flags: str, seq: int, ack: int = 0, data: bytes = b"") -> bytes:
    """A segment of a's connection from port 40000 to b's port 80: d=0 from a, d=1 from b."""
    if d == 0:
        return tcp(A, B, 40000, 80, flags, seq, ack, data)
    return tcp(B, A, 80, 40000, flags, seq, ack, data, out=False)


def test_a_connection_from_a_works_and_replies_pass(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    r.send("a", seg(0, "S", 100))
    r.send("b", seg(1, "SA", 500, 101))
    r.send("a", seg(0, "A", 101, 501))
    r.send("a", seg(0, "PA", 101, 501, b"hello"))
    r.send("b", seg(1, "PA", 501, 106, b"world"))
    assert len(r.got("b")) == 3 and len(r.got("a")) == 2
    (conn,) = r.sw.conntrack.conns(zone=1)
    assert conn.mark == 7 and conn.replied


def test_a_connection_from_b_is_refused(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    r.send("b", seg(1, "S", 500))
    assert r.got("a") == [] and len(r.sw.conntrack) == 0
    t1 = r.sw.pipeline.tables[1]
    assert (t1.lookups, t1.matches) == (1, 0)  # +new from b matches nothing
    assert r.sw.drops == {"no_match": 1}


def test_a_forged_rst_is_invalid_and_dropped_even_from_the_cache(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    a = r.sw.port_by_name("a")
    assert a is not None
    r.send("a", seg(0, "S", 100))
    r.send("b", seg(1, "SA", 500, 101))
    stream = [(b"", seg(0, "PA", 101 + 10 * i, 501, b"x" * 10)) for i in range(6)]
    forged = (b"", seg(0, "PA", 101 + 50_000_000, 501, b"x" * 10))  # far outside the window
    r.sw.receive_batch(a, [*stream[:3], forged, *stream[3:]], 1.0)
    assert r.sw.fast_hits > 0  # the stream's later segments came from the cache
    assert len(r.got("b")) == 1 + 6
    assert r.sw.conntrack.drops == {"ct_invalid": 1}
    rst = seg(1, "R", 500 + 40_000)  # in the window but not the next sequence number
    r.send("b", rst)
    assert r.sw.conntrack.drops == {"ct_invalid": 2}
    assert len(r.got("a")) == 1  # only the SYN+ACK
    (conn,) = r.sw.conntrack.conns()
    assert conn.timeout == "tcp_established"


def test_trace_follows_the_recirculation(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    key = fk.extract(seg(0, "S", 1), 1)
    tr = r.sw.trace(key)
    text = tr.format()
    assert "recirc: ct(table=1,zone=1) -> table 1, ct_state=new+trk" in text
    assert "ct(commit,zone=1,exec(set_field:0x7->ct_mark))" in text
    est = r.sw.trace(fk.extract(seg(0, "A", 1), 1), ct_next=[TRK | EST])
    assert "ct_state=est+trk" in est.format()
    assert est.recirculations[0][1].odp == (("output", 2),)
    rpl = r.sw.trace(fk.extract(seg(1, "A", 1), 2), ct_next=[TRK | EST | RPL])
    assert rpl.recirculations[0][1].odp == ()  # the reply's flow wants the connection's mark
    assert len(r.sw.conntrack) == 0  # a trace changes no connection
    assert tr.as_dict()["recirculations"][0]["heading"].startswith("recirc:")
