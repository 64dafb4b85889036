"""The cached path's rewrite of routed frames gives the general path's bytes."""

from __future__ import annotations

import random
import struct

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from vnet.datapath import offload, rewrite
from vnet.packet import flowkey as fk
from vnet.pipeline import odp

NEW_DST, NEW_SRC = 0x0A0000000101, 0x0A0000000199


def routed_ops(key: tuple[int, ...]) -> list[tuple[object, ...]]:
    return [("set", fk.ETH_SRC, NEW_SRC), ("set", fk.ETH_DST, NEW_DST),
            ("set", fk.IP_TTL, key[fk.IP_TTL] - 1), ("output", 3)]  # fmt: skip


def frames() -> list[bytes]:
    rng = random.Random(7)
    out = []
    for i in range(300):
        ttl = rng.randrange(2, 256)
        if i % 3 == 0:
            l3 = IPv6(src="fd00:1::10", dst="fd00:2::11", hlim=ttl) / TCP(
                sport=rng.randrange(65536)
            )
        else:
            l3 = IP(src="10.1.0.11", dst="10.2.0.11", ttl=ttl, id=rng.randrange(65536),
                    tos=rng.randrange(256)) / UDP(sport=rng.randrange(65536), dport=53)  # fmt: skip
        eth = Ether(src="02:00:00:00:01:0a", dst="0a:00:00:00:01:01")
        f = eth / Dot1Q(vlan=5) / l3 if i % 5 == 0 else eth / l3
        out.append(bytes(f) + bytes(rng.randrange(200)))
    return out


def test_the_same_bytes_as_the_general_path() -> None:
    checked = 0
    for f in frames():
        key = fk.extract(f, in_port=1)
        ops = routed_ops(key)
        r = rewrite.plan(ops, key)
        assert r is not None and r.outs == (3,)
        ((op, want),) = odp.apply(f, key, ops)
        assert op == ("output", 3)
        got = rewrite.apply(r, f)
        assert got == want
        back = Ether(got)
        if IP in back:  # and the checksum is right, not only equal
            fixed = back.copy()
            del fixed[IP].chksum
            assert Ether(bytes(fixed))[IP].chksum == back[IP].chksum
        checked += 1
    assert checked == 300


def test_anything_else_is_not_planned() -> None:
    f = bytes(Ether() / IP(ttl=9) / UDP())
    key = fk.extract(f, in_port=1)
    assert rewrite.plan([("output", 2)], key) is None  # plain: the datapath's own
    assert rewrite.plan([("set", fk.IPV4_DST, 1), ("output", 2)], key) is None
    assert (
        rewrite.plan([("set", fk.IP_TTL, 8), ("push_vlan", 0x8100, 5), ("output", 2)], key) is None
    )
    assert (
        rewrite.plan(
            [("set", fk.IP_TTL, 8), ("output", 2), ("set", fk.ETH_SRC, 1), ("output", 3)], key
        )
        is None
    )
    assert rewrite.plan([("set", fk.TUN_ID, 5), ("output", 2)], key) is None
    arp = bytes(Ether(type=0x0806)) + bytes(28)
    assert rewrite.plan([("set", fk.ETH_SRC, 1), ("output", 2)], fk.extract(arp, in_port=1)) is None


def test_a_switchs_routed_frames_take_the_batch_path(monkeypatch: object) -> None:
    """Routed on one chassis: after the first frame, a batch of one signature is rewritten
    on the cached path -- never through the general interpreter -- and arrives right."""
    from tests.unit.compiler.test_router import IP4, MAC, ONE, Rig, model, ping4

    rig = Rig(model(ONE))
    sw = rig.where["a"]
    port = sw.port_by_name(next(p.iface for p in rig.state.all("port") if p.name == "a"))
    assert port is not None
    frame = ping4("a", IP4["b"])
    sw.receive_batch(port, [(b"", frame)], 1.0)  # the full path decides, the cache keeps it
    calls = []
    real = odp.apply
    monkeypatch.setattr(odp, "apply", lambda *a, **k: calls.append(1) or real(*a, **k))  # type: ignore[attr-defined]
    sw.receive_batch(port, [(b"", frame)] * 5, 1.0)
    got = rig.got("b")
    assert len(got) == 6 and not calls
    for f in got:
        assert (f.dst, f[IP].ttl, f[IP].dst) == (MAC["b"], 63, IP4["b"])
    assert len({bytes(f) for f in got}) == 1  # the cached path's bytes are the full path's


def _tso(payload: int, mss: int) -> tuple[bytes, bytes]:
    """A TCP GSO super-frame from web1 to db1's subnet, and its virtio-net header."""
    from tests.unit.compiler.test_router import GW_MAC, IP4, MAC

    f = bytes(Ether(src=MAC["a"], dst=GW_MAC["s1"]) / IP(src=IP4["a"], dst=IP4["b"], ttl=64)
              / TCP(sport=5555, dport=80, flags="A")) + bytes(payload)  # fmt: skip
    hdr = struct.pack("<BBHHHH", 1, 1, 54, mss, 34, 16)  # needs csum, TCPv4, hdr_len, mss
    return hdr, f


def test_a_gso_frame_is_judged_by_its_segments_length() -> None:
    hdr, f = _tso(20_000, 1448)
    assert offload.wire_len(hdr, f) == 54 + 1448
    assert offload.wire_len(b"", f) == len(f)
    hdr_udp = struct.pack("<BBHHHH", 1, 5, 42, 1000, 34, 6)  # UDP GSO: 8 bytes of header
    assert offload.wire_len(hdr_udp, f) == 34 + 8 + 1000


def test_a_routed_tso_frame_within_the_mtu_is_routed_not_punted() -> None:
    from tests.unit.compiler.test_router import ONE, Rig, model

    state = model(ONE).copy()
    for n in list(state.all("network")):
        state.objects["network"][n.id] = n.changed(mtu=1442)
    rig = Rig(state)
    sw = rig.where["a"]
    port = sw.port_by_name(next(p.iface for p in rig.state.all("port") if p.name == "a"))
    assert port is not None
    hdr, f = _tso(20_000, 1380)  # segments of 1434 bytes: within the MTU of 1442
    sw.receive_batch(port, [(hdr, f)], 1.0)
    assert not rig.packet_ins  # no "too big" to the controller
    hdr, f = _tso(20_000, 1500)  # segments of 1554 bytes: too big
    sw.receive_batch(port, [(hdr, f)], 1.0)
    assert rig.packet_ins


def test_a_batch_is_rewritten_as_each_frame_is() -> None:
    fs = frames()
    for f in fs[:60]:
        key = fk.extract(f, in_port=1)
        r = rewrite.plan(routed_ops(key), key)
        assert r is not None
        short = f[: key[fk.L3_OFS] + 6]  # cut inside the IP header: left whole but for the MACs
        assert rewrite.apply_batch(r, [(b"h", f), (b"", short)]) == [
            (b"h", rewrite.apply(r, f)), (b"", rewrite.apply(r, short))]  # fmt: skip
