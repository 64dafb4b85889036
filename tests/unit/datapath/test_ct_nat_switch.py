"""NAT in the switch: the classic flows, on an in-process switch with memory ports.

Port a is the inside (10.0.0.1), port b the outside (10.0.0.2); a's
connections leave from 192.0.2.1.  What each port receives is judged by
scapy (addresses, ports, checksums), for packets of the full path and of
the signature cache alike.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.l2 import Ether

from vnet.datapath.conntrack import EST, RPL, TRK, format_conn
from vnet.packet import flowkey as fk
from vnet.pipeline.errors import ErrorKind, PipelineError
from vnet.pipeline.ofctl import parse_flow

from .conftest import SNAT_IN_PLACE, SNAT_RECIRC, A, B, Rig, TwoPorts, X, eth, mac, tcp


@pytest.mark.parametrize("flows", [SNAT_RECIRC, SNAT_IN_PLACE], ids=["recirculated", "in_place"])
def test_source_nat_a_tcp_connection(two_ports: TwoPorts, flows: list[str]) -> None:
    r = two_ports(flows)
    r.send("a", tcp(A, B, 40000, 80, "S", 100))
    (syn,) = r.received("b")
    assert (syn[IP].src, syn[TCP].sport, syn[IP].dst) == (X, 40000, B)
    r.send("b", tcp(B, X, 80, 40000, "SA", 500, 101, out=False))
    (synack,) = r.received("a")
    assert (synack[IP].dst, synack[TCP].dport, synack[IP].src) == (A, 40000, B)
    a = r.sw.port_by_name("a")
    assert a is not None
    stream = [(b"", tcp(A, B, 40000, 80, "PA", 101 + 5 * i, 501, b"x" * 5)) for i in range(5)]
    r.sw.receive_batch(a, stream, 1.0)
    assert r.sw.fast_hits >= 4  # the cache served them, the tracker saw each
    out = r.received("b")
    assert len(out) == 5 and {p[IP].src for p in out} == {X}
    assert [p[TCP].seq for p in out] == [101 + 5 * i for i in range(5)]
    (conn,) = r.sw.conntrack.conns()
    assert conn.packets == [6, 1] and conn.timeout == "tcp_established"
    assert f"reply=(src={B},dst={X},sport=80,dport=40000)" in format_conn(conn, 1.0)


def test_a_fork_goes_on_untranslated(two_ports: TwoPorts) -> None:
    """ct(table=N,nat): this pass is neither tracked nor translated; table N gets the
    translated packet with its ct fields."""
    flows = [
        "table=0,priority=10,in_port=1,ip,actions=ct(table=1,zone=1,nat),output:3",
        "table=1,priority=10,ip,ct_state=+trk+snat,actions=output:2",
        "table=9,priority=10,in_port=1,ip,actions=ct(commit,zone=1,nat(src=192.0.2.1))",
    ]
    r = two_ports(flows)
    r.port("c", port_security=False)
    # commit the connection first (table 9 through a packet-out-like path)
    udp = bytes(eth() / IP(src=A, dst=B) / UDP(sport=5, dport=6) / b"d")
    r.sw.packet_out(1, parse_flow(flows[2]).flow.instructions.apply, udp)
    r.send("a", udp)
    (plain,) = r.received("c")
    (translated,) = r.received("b")
    assert plain[IP].src == A and translated[IP].src == X


def test_destination_nat_and_its_replies(two_ports: TwoPorts) -> None:
    flows = [
        "priority=10,in_port=1,tcp,nw_dst=198.51.100.80,tp_dst=80,"
        "actions=ct(commit,zone=2,nat(dst=10.0.0.2:8080)),output:2",
        "priority=10,in_port=2,tcp,actions=ct(zone=2,nat),output:1",
    ]
    r = two_ports(flows)
    r.send("a", tcp(A, "198.51.100.80", 5000, 80, "S", 1))
    (syn,) = r.received("b")
    assert (syn[IP].dst, syn[TCP].dport, syn[IP].src) == (B, 8080, A)
    r.send("b", tcp(B, A, 8080, 5000, "SA", 9, 2, out=False))
    (synack,) = r.received("a")
    assert (synack[IP].src, synack[TCP].sport) == ("198.51.100.80", 80)


def test_ct_state_says_what_was_translated(two_ports: TwoPorts) -> None:
    flows = [
        *SNAT_RECIRC[:2],
        "table=1,priority=20,in_port=1,ip,ct_state=+est+trk+snat,actions=output:2",
        "table=1,priority=20,in_port=2,ip,ct_state=+est+trk+rpl+dnat,actions=output:1",
    ]
    r = two_ports(flows)
    r.send("a", tcp(A, B, 40000, 80, "S", 100))
    r.send("b", tcp(B, X, 80, 40000, "SA", 500, 101, out=False))
    r.send("a", tcp(A, B, 40000, 80, "A", 101, 501))
    # only the flows that want the NAT bits pass the SYN+ACK and the ACK
    assert len(r.got("a")) == 1 and len(r.got("b")) == 2


def test_an_icmp_error_comes_back_translated(two_ports: TwoPorts) -> None:
    r = two_ports(SNAT_RECIRC)
    r.send("a", tcp(A, B, 40000, 80, "S", 100))
    (syn,) = r.received("b")
    err = Ether(src=mac(2), dst=mac(1)) / IP(src=B, dst=X) / ICMP(type=3, code=3) / bytes(syn[IP])
    r.install(["table=1,priority=10,in_port=2,icmp,ct_state=+rel+trk,actions=output:1"])
    r.send("b", bytes(err))
    (back,) = r.received("a")
    assert back[IP].dst == A and back[IPerror].src == A and back[TCPerror].sport == 40000


def test_exhaustion_drops_and_counts(two_ports: TwoPorts) -> None:
    r = two_ports([
        "priority=10,in_port=1,tcp,actions=ct(commit,nat(src=192.0.2.1:1000)),output:2",
    ])  # fmt: skip
    r.send("a", tcp(A, B, 40000, 80, "S", 1))
    r.send("a", tcp("10.0.0.7", B, 40000, 80, "S", 1))
    assert len(r.got("b")) == 1
    assert r.sw.drops == {"ct_nat_exhausted": 1}
    assert r.sw.conntrack.drops == {"ct_nat_exhausted": 1} and len(r.sw.conntrack) == 1


def test_trace_shows_the_translation(two_ports: TwoPorts) -> None:
    r = two_ports(SNAT_RECIRC)
    new = r.sw.trace(fk.extract(tcp(A, B, 40000, 80, "S", 1), 1))
    assert "recirc: ct(table=1,zone=1,nat) -> table 1, ct_state=new+trk" in new.format()
    assert "nat: ipv4_src 10.0.0.1 -> 192.0.2.1" in new.format()  # the commit, in place
    r.send("a", tcp(A, B, 40000, 80, "S", 100))
    est = r.sw.trace(fk.extract(tcp(A, B, 40000, 80, "A", 101, 1), 1), ct_next=[TRK | EST])
    heading, sub = est.recirculations[0]
    assert heading.endswith("ct_state=est+trk+snat, nat: ipv4_src 10.0.0.1 -> 192.0.2.1")
    assert sub.initial[fk.IPV4_SRC] == int.from_bytes(bytes([192, 0, 2, 1]), "big")
    rpl = r.sw.trace(fk.extract(tcp(B, X, 80, 40000, "A", 1, 1, out=False), 2),
                     ct_next=[TRK | EST | RPL])  # fmt: skip
    assert rpl.recirculations[0][0].endswith("nat: ipv4_dst 192.0.2.1 -> 10.0.0.1")
    assert rpl.recirculations[0][1].odp == (("output", 1),)
    (conn,) = r.sw.conntrack.conns()
    assert conn.packets == [1, 0] and not conn.replied  # a trace changes nothing


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        ("ct(commit,nat(src=10.0.0.9-10.0.0.1))", "runs backwards"),
        ("ct(force)", "force requires commit"),
    ],
)
def test_bad_nat_and_force_are_refused_by_name(
    rig: Callable[..., Rig], actions: str, message: str
) -> None:
    r = rig()
    before = r.sw.pipeline.rules()
    with pytest.raises(PipelineError, match=message) as e:
        r.install([f"ip,actions={actions}"])
    assert e.value.kind == ErrorKind.BAD_ARGUMENT
    assert r.sw.pipeline.rules() == before


def test_a_packet_out_with_a_bad_range_is_refused(two_ports: TwoPorts) -> None:
    r = two_ports([])
    actions = parse_flow("ip,actions=ct(commit,nat(src=10.0.0.9-10.0.0.1)),output:2")
    udp = bytes(eth() / IP(src=A, dst=B) / UDP(sport=5, dport=6))
    with pytest.raises(PipelineError, match="runs backwards"):
        r.sw.packet_out(1, actions.flow.instructions.apply, udp)
    assert r.got("b") == [] and len(r.sw.conntrack) == 0
