"""Codec round trips, and random bytes never crash a parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vnet.packet import decode, ethernet, extract, ipv4, ipv6, tcp, udp, vxlan
from vnet.packet import flowkey as fk
from vnet.packet.geneve import GeneveOption
from vnet.packet.geneve import build as geneve_build
from vnet.packet.geneve import parse as geneve_parse
from vnet.packet.gre import build as gre_build
from vnet.packet.gre import parse as gre_parse

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
mac = st.integers(0, (1 << 48) - 1)
ip6 = st.integers(0, (1 << 128) - 1)


@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
@settings(max_examples=3000)
def test_random_bytes_never_crash_extract(data: bytes, in_port: int) -> None:
    k = extract(data, in_port)
    assert len(k) == fk.KEY_LEN


@given(st.binary(max_size=200))
@settings(max_examples=1500)
def test_random_bytes_never_crash_decode(data: bytes) -> None:
    d = decode(data)
    assert d.layers or d.error is not None


@given(mac, mac, u32, u32, u16, u16, u8, st.binary(max_size=64), st.booleans(), st.integers(0, 63))
def test_ipv4_tcp_round_trip(
    dst: int,
    src: int,
    a: int,
    b: int,
    sp: int,
    dp: int,
    ttl: int,
    payload: bytes,
    df: bool,
    dscp: int,
) -> None:
    frame = ethernet.build(
        dst,
        src,
        0x0800,
        ipv4.build(
            a, b, 6, tcp.build(sp, dp, payload, ip_src=a, ip_dst=b), ttl=ttl, df=df, dscp=dscp
        ),
    )
    k = extract(frame, 1)
    assert k[fk.PARSE_ERROR] == 0
    assert (k[fk.ETH_DST], k[fk.ETH_SRC], k[fk.IPV4_SRC], k[fk.IPV4_DST]) == (dst, src, a, b)
    assert (k[fk.TP_SRC], k[fk.TP_DST], k[fk.IP_TTL], k[fk.IP_DSCP]) == (sp, dp, ttl, dscp)
    d = decode(frame)
    assert (
        d.layer("ipv4")["checksum_ok"]
        and d.layer("tcp")["checksum_ok"]
        and d.layer("ipv4")["df"] == df
    )


@given(ip6, ip6, u16, u16, st.integers(0, 0xFFFFF), st.binary(max_size=64))
def test_ipv6_udp_round_trip(a: int, b: int, sp: int, dp: int, label: int, payload: bytes) -> None:
    frame = ethernet.build(
        2,
        1,
        0x86DD,
        ipv6.build(
            a, b, 17, udp.build(sp, dp, payload, ip_src=a, ip_dst=b, ipv6=True), flow_label=label
        ),
    )
    k = extract(frame)
    assert (k[fk.IPV6_SRC], k[fk.IPV6_DST], k[fk.TP_SRC], k[fk.TP_DST], k[fk.IPV6_LABEL]) == (
        a,
        b,
        sp,
        dp,
        label,
    )
    assert decode(frame).layer("udp")["checksum_ok"]


@given(st.integers(0, (1 << 24) - 1), st.binary(max_size=40))
def test_vxlan_round_trip(vni: int, inner: bytes) -> None:
    h, off = vxlan.parse(vxlan.build(vni, inner), 0)
    assert h.vni == vni and h.vni_valid and off == 8


@given(
    st.integers(0, (1 << 24) - 1),
    st.lists(
        st.tuples(u16, u8, st.binary(max_size=12).map(lambda b: b + b"\x00" * ((-len(b)) % 4))),
        max_size=4,
    ),
)
def test_geneve_round_trip(vni: int, opts: list[tuple[int, int, bytes]]) -> None:
    options = tuple(GeneveOption(c, t & 0x7F, d) for c, t, d in opts)
    h, _ = geneve_parse(geneve_build(vni, b"", options), 0)
    assert h.vni == vni and h.options == options


@given(u16, st.one_of(st.none(), u32), st.one_of(st.none(), u32), st.booleans())
def test_gre_round_trip(proto: int, key: int | None, seq: int | None, csum: bool) -> None:
    g, _ = gre_parse(gre_build(proto, b"abcd", key=key, seq=seq, checksum=csum), 0)
    assert (
        g.protocol == proto
        and g.key_present == (key is not None)
        and g.seq_present == (seq is not None)
    )
    assert (g.key if key is not None else None) == key and (
        g.seq if seq is not None else None
    ) == seq
