"""BFD control packet codec (RFC 5880 §4.1), judged by scapy's BFD layer."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest
from scapy.contrib.bfd import BFD
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from vnet.packet import bfd
from vnet.packet.bfd import Bfd, BfdError, Diag, State

PKT = Bfd(
    state=State.UP,
    my_disc=0x01020304,
    your_disc=0xA0B0C0D0,
    diag=Diag.NEIGHBOR_DOWN,
    detect_mult=5,
    desired_min_tx=100_000,
    required_min_rx=300_000,
    required_min_echo_rx=0,
    poll=True,
)


def test_build_is_what_scapy_reads() -> None:
    s = BFD(bfd.build(PKT))
    assert s.version == 1
    assert s.diag == 3
    assert s.sta == 3
    assert s.flags == 0x20  # P only
    assert s.detect_mult == 5
    assert s.len == 24
    assert s.my_discriminator == 0x01020304
    assert s.your_discriminator == 0xA0B0C0D0
    assert s.min_tx_interval == 100_000
    assert s.min_rx_interval == 300_000
    assert s.echo_rx_interval == 0


@pytest.mark.parametrize("flags,attr", [(0x10, "final"), (0x08, "cpi"), (0x02, "demand")])
def test_parse_what_scapy_builds(flags: int, attr: str) -> None:
    raw = bytes(
        BFD(
            diag=1,
            sta=2,
            flags=flags,
            detect_mult=3,
            my_discriminator=7,
            your_discriminator=9,
            min_tx_interval=1_000_000,
            min_rx_interval=200_000,
            echo_rx_interval=50_000,
        )
    )
    p = bfd.parse(raw)
    assert p.state is State.INIT
    assert p.diag is Diag.EXPIRED
    assert (p.my_disc, p.your_disc) == (7, 9)
    assert (p.desired_min_tx, p.required_min_rx, p.required_min_echo_rx) == (
        1_000_000,
        200_000,
        50_000,
    )
    assert getattr(p, attr) is True
    assert [f for f in ("poll", "final", "cpi", "demand") if getattr(p, f)] == [attr]
    assert bfd.build(p) == raw


def test_round_trip_every_state() -> None:
    for st in State:
        p = PKT._replace(state=st, poll=False, your_disc=PKT.your_disc if st > State.DOWN else 0)
        assert bfd.parse(bfd.build(p)) == p


def test_auth_section_kept_raw() -> None:
    auth = bytes([1, 5, 1]) + b"ab"  # simple password, key id 1
    p = PKT._replace(auth=auth, poll=False)
    raw = bfd.build(p)
    assert raw[3] == 29 and raw[1] & 0x04
    s = BFD(raw)
    assert s.flags.A and s.optional_auth.auth_type == 1 and s.optional_auth.auth_keyid == 1
    assert s.optional_auth.auth_key == b"ab"
    assert bfd.parse(raw).auth == auth


def _raw(**over: int) -> bytearray:
    fields = {"vd": 0x20, "flags": 0xC0, "mult": 3, "len": 24, "my": 1, "your": 2}
    fields.update(over)
    return bytearray(
        struct.pack(
            "!BBBBIIIII",
            fields["vd"],
            fields["flags"],
            fields["mult"],
            fields["len"],
            fields["my"],
            fields["your"],
            100_000,
            100_000,
            0,
        )
    )


@pytest.mark.parametrize(
    "raw,field",
    [
        (_raw()[:23], "length"),
        (b"", "length"),
        (_raw(vd=0x40), "version"),
        (_raw(len=20), "length"),
        (_raw(len=40), "length"),
        (_raw(flags=0xC4), "length"),  # A bit: 26 bytes at least
        (_raw(mult=0), "detect_mult"),
        (_raw(flags=0xC1), "multipoint"),
        (_raw(my=0), "my_disc"),
        (_raw(your=0), "your_disc"),  # Up with your_disc 0
        (_raw(flags=0xF0), "flags"),  # P and F
    ],
)
def test_parse_refuses_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(BfdError) as e:
        bfd.parse(raw)
    assert e.value.field == field
    assert field in str(e.value)


def test_parse_accepts_zero_your_disc_while_down_and_reserved_diag() -> None:
    p = bfd.parse(_raw(flags=0x40, your=0, vd=0x20 | 20))
    assert p.state is State.DOWN and p.your_disc == 0 and p.diag is Diag.NONE


def test_parse_never_crashes_on_garbage() -> None:
    rng = random.Random(5880)
    good = bfd.frame(PKT, eth_src=2, udp_src=49152)
    for _ in range(3000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        with contextlib.suppress(BfdError):
            bfd.parse(raw)
        mutated = bytearray(good[: rng.randrange(len(good) + 1)])
        for _ in range(rng.randrange(1, 4)):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        with contextlib.suppress(BfdError):
            bfd.parse_frame(bytes(mutated))


@pytest.mark.parametrize(
    "over,field",
    [
        ({"my_disc": 0}, "my_disc"),
        ({"my_disc": 1 << 32}, "my_disc"),
        ({"detect_mult": 0}, "detect_mult"),
        ({"detect_mult": 256}, "detect_mult"),
        ({"desired_min_tx": -1}, "desired_min_tx"),
        ({"poll": True, "final": True}, "flags"),
        ({"auth": b"\x01"}, "auth"),
    ],
)
def test_build_refuses_naming_the_field(over: dict[str, object], field: str) -> None:
    with pytest.raises(BfdError) as e:
        bfd.build(PKT._replace(**over))
    assert e.value.field == field


def test_frame_is_open_vswitch_shaped() -> None:
    raw = bfd.frame(PKT, eth_src=0x0A0000000001, udp_src=49153)
    s = Ether(raw)
    assert s.dst == "00:23:20:00:00:01" and s.src == "0a:00:00:00:00:01"
    assert s[IP].src == "169.254.1.1" and s[IP].dst == "169.254.1.0"
    assert s[IP].ttl == 255 and s[IP].tos == 0x18 and s[IP].proto == 17
    assert s[UDP].sport == 49153 and s[UDP].dport == 3784 and s[UDP].chksum == 0
    ip = s[IP]
    chk = ip.chksum
    del ip.chksum
    assert IP(bytes(ip)).chksum == chk  # scapy recomputes the same header checksum
    assert BFD(bytes(s[UDP].payload)).my_discriminator == PKT.my_disc
    got = bfd.parse_frame(raw)
    assert got.packet == PKT
    assert (got.ip_src, got.ip_dst, got.ttl, got.udp_src) == (
        bfd.BFD_SRC_IP,
        bfd.BFD_DST_IP,
        255,
        49153,
    )
    assert got.eth_dst == bfd.BFD_MAC


def test_parse_frame_from_scapy() -> None:
    raw = bytes(
        Ether(dst="00:23:20:00:00:01", src="02:00:00:00:00:02")
        / IP(src="169.254.1.1", dst="169.254.1.0", ttl=254)
        / UDP(sport=50000, dport=3784)
        / BFD(sta=1, my_discriminator=42, your_discriminator=0)
    )
    got = bfd.parse_frame(raw)
    assert got.ttl == 254  # reported; the session layer discards it
    assert got.packet.state is State.DOWN and got.packet.my_disc == 42


def test_parse_frame_refuses_other_traffic() -> None:
    raw = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53) / (b"x" * 30))
    assert not bfd.is_bfd(raw)
    with pytest.raises(BfdError) as e:
        bfd.parse_frame(raw)
    assert e.value.field == "frame"
    bad = bytearray(bfd.frame(PKT, eth_src=1, udp_src=49152))
    bad[24] ^= 0xFF  # IP header checksum
    with pytest.raises(BfdError) as e:
        bfd.parse_frame(bytes(bad))
    assert e.value.field == "ipv4"
    with pytest.raises(BfdError) as e:
        bfd.frame(PKT, eth_src=1, udp_src=1000)
    assert e.value.field == "udp_src"
