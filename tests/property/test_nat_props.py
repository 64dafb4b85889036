"""NAT symmetry: whatever the flows and the ranges, a translated connection comes back whole.

Random UDP flows (few addresses and ports, so they collide) are committed
with a random SNAT or DNAT range, small enough to run out.  Then: no two
connections share a reply tuple; a packet of the original direction leaves
as the mirror of its connection's reply tuple; the answer to that packet,
run through `ct(nat)`, arrives as the exact mirror of the packet first sent;
and a refused commit leaves nothing behind.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vnet.datapath.conntrack import Tracker
from vnet.datapath.ctnat import NatRange
from vnet.packet import flowkey as fk
from vnet.packet import ipv4, udp
from vnet.packet.nat import rewrite

BASE = 0x0A000000  # 10.0.0.0
POOL = 0xC0000200  # 192.0.2.0


def frame(src: int, dst: int, sport: int, dport: int) -> bytes:
    seg = udp.build(sport, dport, b"data", ip_src=src, ip_dst=dst)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ipv4.build(
        src, dst, 17, seg
    )


def translate(ct: Tracker, f: bytes, now: float, n: NatRange, commit: bool) -> tuple[bytes, bool]:
    key = fk.extract(f, 1)
    r = ct.process(f, key, 0, now, commit=commit, nat=n)
    if r.drop is not None:
        return f, False
    buf = bytearray(f)
    if r.rewrite is not None:
        rewrite(buf, key, r.rewrite)
    return bytes(buf), True


def fields(f: bytes) -> tuple[int, int, int, int]:
    k = fk.extract(f, 1)
    return k[fk.IPV4_SRC], k[fk.IPV4_DST], k[fk.TP_SRC], k[fk.TP_DST]


flows = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.integers(1, 2),
        st.sampled_from([1024, 1025, 5000]),
        st.sampled_from([53, 80]),
    ),
    min_size=1,
    max_size=12,
)
ranges = st.builds(
    lambda kind, lo, span, plo, pspan, flag: NatRange(
        kind,
        4,
        POOL + lo,
        POOL + lo + span,
        plo,
        plo + pspan if plo else 0,
        frozenset([flag]) if flag else frozenset(),
    ),
    st.sampled_from(["src", "dst"]),
    st.integers(1, 3),
    st.integers(0, 1),
    st.sampled_from([0, 0, 2000]),
    st.integers(0, 1),
    st.sampled_from(["", "hash", "persistent", "random"]),
)


@settings(max_examples=150, deadline=None)
@given(flows, ranges, st.integers(0, 2**16))
def test_translated_connections_come_back_whole(
    flow_list: list[tuple[int, int, int, int]], n: NatRange, seed: int
) -> None:
    ct = Tracker(seed=seed)
    apply = NatRange()
    for i, (s, d, sport, dport) in enumerate(flow_list):
        sent = frame(BASE + s, BASE + 100 + d, sport, dport)
        before = len(ct)
        out, ok = translate(ct, sent, float(i), n, commit=True)
        if not ok:
            assert len(ct) == before  # refused: nothing made
            continue
        src, dst, sp, dp = fields(sent)
        osrc, odst, osp, odp = fields(out)
        if n.kind == "src":
            assert odst == dst and odp == dp and n.addr_min <= osrc <= n.addr_max
        else:
            assert osrc == src and n.addr_min <= odst <= n.addr_max
            if n.port_min:
                assert n.port_min <= odp <= n.port_max
        # the peer answers what it received; ct(nat) gives back the mirror of what was sent
        answer = frame(odst, osrc, odp, osp)
        back, ok = translate(ct, answer, float(i), apply, commit=False)
        assert ok and fields(back) == (dst, src, dp, sp)
    replies = [c.reply for c in ct.conns()]
    assert len(replies) == len(set(replies)) == len(ct)
