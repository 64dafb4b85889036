"""`flowkey.signature`: frames with one signature have one flow key.

The switch caches what it did with a frame under its signature, so the
property that matters is: same signature => same key.  Frames are built with
scapy (an independent encoder), then a few bytes anywhere are scrambled and
the length changed; whenever the signature still comes out the same (the
bytes it leaves out were hit, or none that matter), `extract` must agree.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from vnet.packet.flowkey import extract, signature


def build(proto: str, tag: int | None, flags: int, payload: int, frag: int) -> bytes:
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if tag is not None:
        l2 = l2 / Dot1Q(vlan=tag, prio=tag % 8)
    ip = IP(src="10.1.2.3", dst="10.4.5.6", tos=flags & 0xFF, ttl=64, flags=frag)
    l4 = {
        "udp": UDP(sport=1000 + flags, dport=53),
        "tcp": TCP(sport=2000, dport=80 + flags, flags=flags & 0x3F),
        "icmp": ICMP(type=8, code=flags % 3),
    }[proto]
    return bytes(l2 / ip / l4 / bytes(payload))


def scramble(frame: bytes, rng: random.Random) -> bytes:
    """The frame with one to three bytes anywhere replaced, and maybe a new length."""
    out = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    if rng.random() < 0.3:
        out = out[: rng.randrange(30, len(out) + 1)]  # truncated
    elif rng.random() < 0.3:
        out += bytes(rng.randrange(1, 40))  # padded
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(
    proto=st.sampled_from(["udp", "tcp", "icmp"]),
    tag=st.one_of(st.none(), st.integers(1, 4094)),
    flags=st.integers(0, 255),
    payload=st.integers(0, 64),
    frag=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 2**32),
)
def test_same_signature_same_key(
    proto: str, tag: int | None, flags: int, payload: int, frag: int, seed: int
) -> None:
    frame = build(proto, tag, flags, payload, frag)
    sig = signature(frame)
    assert sig is not None
    key = extract(frame, 3)
    o = 14 if tag is None else 18
    renumbered = bytearray(frame)
    renumbered[o + 4 : o + 6] = b"\xbe\xef"  # another IP identification: one flow still
    assert signature(bytes(renumbered)) == sig
    assert extract(bytes(renumbered), 3) == key
    rng = random.Random(seed)
    for _ in range(40):
        other = scramble(frame, rng)
        if signature(other) == sig:
            assert extract(other, 3) == key


def test_other_frames_have_none() -> None:
    arp = bytes.fromhex(
        "ffffffffffff020000000001080600010800060400010200000000010a0102030000000000000a040506"
    )
    assert signature(arp) is None
    assert signature(build("udp", None, 0, 0, 0)[:30]) is None  # truncated headers
    opts = bytearray(build("udp", None, 0, 8, 0))
    opts[14] = 0x46  # IP options: the full parse
    assert signature(bytes(opts)) is None
    short = bytearray(build("tcp", None, 0, 0, 0))
    short[14 + 32] = 0x40  # TCP data offset 16 bytes: malformed, the full parse counts it
    assert signature(bytes(short)) is None


def test_signature_tells_flows_apart() -> None:
    a = build("udp", None, 1, 0, 0)
    b = build("udp", None, 2, 0, 0)  # other source port
    assert signature(a) != signature(b)
    assert signature(build("udp", 10, 0, 0, 0)) != signature(build("udp", 11, 0, 0, 0))
