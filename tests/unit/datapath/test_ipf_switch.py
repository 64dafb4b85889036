"""Fragments through the switch's `ct`: held, tracked as one datagram, sent on as they came.

An in-process switch with memory ports a (inside, 10.0.0.1) and b (outside,
10.0.0.2) runs a stateful firewall for UDP: new datagrams only from a.  A
fragmented datagram passes as a whole when allowed -- nothing leaves until
its last fragment is in, then every original fragment, in order -- and not
at all when not.  scapy cuts the datagrams and judges what leaves.
"""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, UDP, defragment, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from vnet.datapath.conntrack import format_conn
from vnet.packet import flowkey as fk

from .conftest import SNAT_IN_PLACE, SNAT_RECIRC, A, B, TwoPorts, X, eth, mac

FIREWALL = [
    "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1)",
    "table=0,priority=100,ipv6,ct_state=-trk,actions=ct(table=1,zone=1)",
    "table=1,priority=10,in_port=1,ct_state=+new+trk,actions=ct(commit,zone=1),output:2",
    "table=1,priority=10,in_port=1,ct_state=+est+trk,actions=output:2",
    "table=1,priority=10,in_port=2,ct_state=+est+trk,actions=output:1",
    "table=1,priority=20,ct_state=+inv+trk,actions=drop",
]
# no recirculation: the output after ct waits for the datagram
IN_PLACE = [
    "priority=10,in_port=1,ip,actions=ct(commit,zone=1),output:2",
]


def datagram(out: bool = True, size: int = 3000, ident: int = 7, src: str = A) -> Packet:
    s, d = (src, B) if out else (B, src)
    sp, dp = (1000, 2000) if out else (2000, 1000)
    return (
        IP(src=s, dst=d, id=ident) / UDP(sport=sp, dport=dp) / bytes(i % 251 for i in range(size))
    )


def frags(dg: Packet, out: bool = True, size: int = 1400) -> list[bytes]:
    return [bytes(eth(out) / f) for f in fragment(dg, fragsize=size)]


def whole(frames: list[bytes]) -> Packet:
    """The receiver's reassembly (scapy's), with its UDP checksum checked."""
    (dg,) = defragment([Ether(f)[IP] for f in frames])
    dg = IP(bytes(dg))
    got = dg[UDP].chksum
    again = dg.copy()
    again[UDP].chksum = None
    assert IP(bytes(again))[UDP].chksum == got, "bad UDP checksum"
    return dg


def test_a_fragmented_datagram_passes_whole_when_allowed(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    frames = frags(datagram())
    assert len(frames) == 3
    for i in (2, 0):  # out of order: nothing leaves while the datagram is incomplete
        r.send("a", frames[i])
        assert r.got("b") == []
    assert r.sw.ipf.held == 2
    r.send("a", frames[1])
    assert r.got("b") == frames  # the originals, unchanged, in order of offset
    assert r.sw.drops == {} and r.sw.ipf.held == 0
    (conn,) = r.sw.conntrack.conns(zone=1)
    assert "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1000,dport=2000)" in format_conn(conn, 0)
    # the answer, fragmented too, is established and comes back whole
    back = frags(datagram(out=False, size=4000), out=False)
    for f in reversed(back):
        r.send("b", f)
    assert r.got("a") == back
    assert conn.replied and conn.packets == [1, 1]
    # the first datagram was whole twice: at ct(table=1) and again at ct(commit) after
    # the recirculation (a list per pass, as Open vSwitch keys them by recirculation)
    st = r.sw.ipf.stats()["v4"]
    assert (st["accepted"], st["completed"], st["reassembled"]) == (9, 9, 3)


def test_a_fragmented_datagram_does_not_pass_at_all_when_refused(
    two_ports: TwoPorts,
) -> None:
    r = two_ports(FIREWALL)
    back = frags(datagram(out=False), out=False)
    for f in back:
        r.send("b", f)
    assert r.got("a") == [] and len(r.sw.conntrack) == 0
    assert r.sw.drops == {"no_match": 3}  # each fragment, with the datagram's +new
    assert r.sw.conntrack.drops == {}  # not an invalid fragment: a refused datagram


def test_fragments_of_the_cached_path_are_held_too(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    a = r.sw.port_by_name("a")
    assert a is not None
    dgs = [frags(datagram(ident=i)) for i in range(1, 5)]
    # one batch, the datagrams' fragments interleaved: the cache serves the repeats
    batch = [(b"", dgs[i][j]) for j in range(3) for i in range(4)]
    r.sw.receive_batch(a, batch, 1.0)
    got = r.got("b")
    assert sorted(got) == sorted(f for d in dgs for f in d)
    for d in dgs:  # each datagram's fragments leave in order
        assert [got.index(f) for f in d] == sorted(got.index(f) for f in d)
    assert r.sw.ipf.stats()["v4"]["reassembled"] == 4 * 2  # at ct(table=1) and ct(commit)


def test_without_table_the_actions_after_ct_wait_for_the_datagram(
    two_ports: TwoPorts,
) -> None:
    r = two_ports(IN_PLACE)
    frames = frags(datagram(size=5000))
    order = list(range(len(frames)))
    random.Random(1).shuffle(order)
    for i in order[:-1]:
        r.send("a", frames[i])
    assert r.got("b") == []
    r.send("a", frames[order[-1]])
    assert r.got("b") == frames
    assert len(r.sw.conntrack) == 1 and r.sw.drops == {}


@pytest.mark.parametrize("flows", [SNAT_RECIRC, SNAT_IN_PLACE], ids=["recirc", "in_place"])
def test_snat_translates_every_fragment_and_the_first_one_s_ports(
    two_ports: TwoPorts, flows: list[str]
) -> None:
    r = two_ports(flows)
    frames = frags(datagram())
    for f in (frames[1], frames[2], frames[0]):
        r.send("a", f)
    out = r.got("b")
    assert len(out) == 3
    for f, orig in zip(out, frames, strict=True):
        ip = Ether(f)[IP]
        assert (ip.src, ip.dst) == (X, B)
        chk = ip.chksum
        ip.chksum = None
        assert IP(bytes(ip)).chksum == chk
        assert (ip.frag, ip.flags) == (Ether(orig)[IP].frag, Ether(orig)[IP].flags)
    dg = whole(out)
    assert dg[UDP].dport == 2000 and bytes(dg[UDP].payload) == bytes(i % 251 for i in range(3000))
    sport = dg[UDP].sport
    # the answer to the translated address is translated back, fragments and all
    ans = IP(src=B, dst=X, id=9) / UDP(sport=2000, dport=sport) / (b"r" * 3000)
    for f in frags(ans, out=False):
        r.send("b", f)
    back = r.got("a")
    assert len(back) == 3 and all(Ether(f)[IP].dst == A for f in back)
    assert whole(back)[UDP].dport == 1000


def test_ipv6_fragments_pass_whole(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    dg = (
        IPv6(src="fd00::1", dst="fd00::2")
        / IPv6ExtHdrFragment(id=77)
        / UDP(sport=1000, dport=2000)
        / (b"6" * 3000)
    )
    frames = [bytes(Ether(src=mac(1), dst=mac(2)) / f) for f in fragment6(dg, 1400)]
    assert len(frames) == 3
    r.send("a", frames[2])
    r.send("a", frames[1])
    assert r.got("b") == []
    r.send("a", frames[0])
    assert r.got("b") == frames
    assert r.sw.ipf.stats()["v6"]["reassembled"] == 2


def test_refused_and_expired_fragments_are_counted_drops(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    small = frags(datagram(ident=1), size=800)  # 820 bytes of IP: too small
    r.send("a", small[0])
    assert r.sw.drops == {"ipf_too_small": 1}
    frames = frags(datagram(ident=2))
    r.send("a", frames[0], now=10.0)
    r.send("a", frames[0], now=10.5)  # a duplicate
    assert r.sw.drops == {"ipf_too_small": 1, "ipf_duplicate": 1}
    r.sw.tick(24.9)
    assert r.sw.ipf.held == 1
    r.sw.tick(25.0)  # 15 s after the list began: the fragment held is dropped
    assert r.sw.drops == {"ipf_too_small": 1, "ipf_duplicate": 1, "ipf_timeout": 1}
    r.send("a", frames[1], now=26.0)
    r.send("a", frames[2], now=26.0)
    assert r.got("b") == []  # the first fragment is gone: the datagram never completes
    r.send("a", frames[0], now=45.0)  # expired lists are dropped before a fragment joins
    assert r.sw.drops["ipf_timeout"] == 3 and r.got("b") == []
    st = r.sw.ipf.stats()["v4"]
    assert (st["ipf_too_small"], st["ipf_duplicate"], st["ipf_timeout"]) == (1, 1, 3)


def test_with_reassembly_off_fragments_are_invalid(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    r.sw.ipf.enabled[4] = False
    for f in frags(datagram()):
        r.send("a", f)
    assert r.got("b") == []
    assert r.sw.conntrack.drops == {"ct_fragment": 3}
    assert r.sw.pipeline.tables[1].matches == 3  # the +inv flow took them


def test_the_trace_says_a_fragment_is_reassembled(two_ports: TwoPorts) -> None:
    r = two_ports(FIREWALL)
    key = fk.extract(frags(datagram())[1], 1)
    text = r.sw.trace(key).format()
    assert "ipf: a fragment: ct(table=1,zone=1) holds it until its datagram is whole" in text
    plain = r.sw.trace(fk.extract(bytes(Ether() / IP(src=A, dst=B) / UDP()), 1)).format()
    assert "ipf" not in plain
    assert r.sw.ipf.held == 0  # a trace holds nothing
