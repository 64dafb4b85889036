"""Fragment reassembly with a stepped clock: order, duplicates, overlaps, limits, timeouts.

scapy fragments the datagrams (an independent fragmenter); what comes back
whole must be byte for byte the datagram before fragmentation.
"""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, UDP, IPOption_RR, defragment, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    PadN,
    fragment6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from vnet.datapath.ipf import Ipf, Reassembled, Refused
from vnet.packet import flowkey as fk

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def datagram4(size: int = 3000, ident: int = 7, src: str = "10.0.0.1") -> Packet:
    return IP(src=src, dst="10.0.0.2", id=ident) / UDP(sport=1000, dport=2000) / (b"x" * size)


def frags4(dg: Packet, size: int = 1400) -> list[bytes]:
    return [bytes(ETH / f) for f in fragment(dg, fragsize=size)]


def datagram6(size: int = 3000, ident: int = 9, hbh: bool = False) -> Packet:
    ip = IPv6(src="fd00::1", dst="fd00::2")
    if hbh:
        ip = ip / IPv6ExtHdrHopByHop()
    return ip / IPv6ExtHdrFragment(id=ident) / UDP(sport=1000, dport=2000) / (b"y" * size)


def whole6(dg: Packet) -> bytes:
    """The datagram as the receiver reassembles it: no fragment header."""
    ip = dg.copy()
    fh = ip[IPv6ExtHdrFragment]
    fh.underlayer.remove_payload()
    ip = ip / fh.payload
    ip[IPv6].plen = None
    return bytes(ETH / ip)


def frags6(dg: Packet, size: int = 1400) -> list[bytes]:
    return [bytes(ETH / f) for f in fragment6(dg, size)]


def add(
    ipf: Ipf[int], frame: bytes, item: int, now: float = 0.0, zone: int = 0, point: int = 0
) -> Reassembled[int] | Refused | None:
    key = fk.extract(frame, 1)
    assert key[fk.IP_FRAG], "not a fragment"
    return ipf.add(frame, key, zone, now, item, point)


def feed(ipf: Ipf[int], frames: list[bytes], order: list[int], now: float = 0.0) -> list[object]:
    return [add(ipf, frames[i], i, now) for i in order]


# -- whole again ----------------------------------------------------------------------
def test_ipv4_in_order_comes_back_whole_with_its_fragments_in_order() -> None:
    dg = datagram4()
    frames = frags4(dg)
    assert len(frames) == 3
    ipf: Ipf[int] = Ipf()
    out = feed(ipf, frames, [0, 1, 2])
    assert out[:2] == [None, None]
    done = out[2]
    assert isinstance(done, Reassembled)
    assert done.packet == bytes(ETH / dg)
    assert done.frags == [0, 1, 2]
    assert ipf.held == 0 and len(ipf) == 0
    c = ipf.stats()["v4"]
    assert (c["accepted"], c["completed"], c["reassembled"]) == (3, 3, 1)


@pytest.mark.parametrize("seed", range(5))
def test_ipv4_out_of_order_comes_back_whole_in_offset_order(seed: int) -> None:
    dg = datagram4(5000)
    frames = frags4(dg, 1200)
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    ipf: Ipf[int] = Ipf()
    out = feed(ipf, frames, order)
    assert all(o is None for o in out[:-1])
    done = out[-1]
    assert isinstance(done, Reassembled)
    assert done.packet == bytes(ETH / dg)
    assert done.frags == sorted(order)


def test_ipv4_keeps_dont_fragment_clear_and_its_options() -> None:
    dg = IP(src="10.0.0.1", dst="10.0.0.2", id=3, options=[IPOption_RR()]) / UDP() / (b"z" * 3000)
    frames = frags4(dg)
    ipf: Ipf[int] = Ipf()
    done = feed(ipf, frames, [2, 0, 1])[-1]
    assert isinstance(done, Reassembled)
    assert done.packet == bytes(ETH / dg)


@pytest.mark.parametrize("hbh", [False, True])
def test_ipv6_comes_back_whole_without_its_fragment_header(hbh: bool) -> None:
    dg = datagram6(hbh=hbh)
    frames = frags6(dg)
    assert len(frames) == 3
    ipf: Ipf[int] = Ipf()
    out = feed(ipf, frames, [1, 2, 0])
    assert out[:2] == [None, None]
    done = out[2]
    assert isinstance(done, Reassembled)
    assert done.packet == whole6(dg)
    assert done.frags == [0, 1, 2]
    back = Ether(done.packet)
    assert back[UDP].dport == 2000 and len(back[Raw].load) == 3000
    assert ipf.stats()["v6"]["reassembled"] == 1


def test_an_ipv6_atomic_fragment_is_whole_at_once() -> None:
    dg = IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment(id=5, m=0, offset=0) / UDP() / b"a"
    frame = bytes(ETH / dg)
    ipf: Ipf[int] = Ipf()
    done = add(ipf, frame, 0)
    assert isinstance(done, Reassembled)
    assert done.packet == whole6(dg) and done.frags == [0]


def test_ethernet_padding_is_not_data() -> None:
    dg = datagram4(1500)  # the last fragment carries a few bytes: its frame is padded
    frames = frags4(dg, 1496)
    last = Ether(frames[-1])
    assert len(frames[-1]) < 60
    frames[-1] = frames[-1] + b"\0" * (60 - len(frames[-1]))
    assert len(bytes(last)) < len(frames[-1])
    ipf: Ipf[int] = Ipf()
    done = feed(ipf, frames, [1, 0])[-1]
    assert isinstance(done, Reassembled) and done.packet == bytes(ETH / dg)


def test_datagrams_are_kept_apart_by_id_addresses_zone_and_point() -> None:
    ipf: Ipf[int] = Ipf()
    a = frags4(datagram4(ident=1))
    b = frags4(datagram4(ident=2))
    c = frags4(datagram4(ident=1, src="10.0.0.9"))
    assert add(ipf, a[0], 0) is None
    assert add(ipf, b[1], 1) is None
    assert add(ipf, c[2], 2) is None
    assert add(ipf, a[1], 3, zone=5) is None  # another zone: another list
    assert add(ipf, a[1], 4, point=1) is None  # reached another ct: another list
    assert len(ipf) == 5
    assert add(ipf, a[1], 5) is None
    done = add(ipf, a[2], 6)
    assert isinstance(done, Reassembled) and done.frags == [0, 5, 6]
    assert len(ipf) == 4 and ipf.held == 4


# -- duplicates and overlaps --------------------------------------------------------------
def test_an_exact_duplicate_is_dropped_alone() -> None:
    frames = frags4(datagram4())
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[0], 0) is None
    assert add(ipf, frames[0], 1) == Refused("ipf_duplicate")
    assert add(ipf, frames[1], 2) is None
    done = add(ipf, frames[2], 3)
    assert isinstance(done, Reassembled) and done.frags == [0, 2, 3]
    assert ipf.stats()["v4"]["ipf_duplicate"] == 1


def test_an_ipv6_exact_duplicate_is_dropped_alone() -> None:
    frames = frags6(datagram6())
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[1], 0) is None
    assert add(ipf, frames[1], 1) == Refused("ipf_duplicate")
    assert feed(ipf, frames, [0])[0] is None
    assert isinstance(add(ipf, frames[2], 2), Reassembled)


def _overlapping4(dg: Packet, offset_units: int, length: int) -> bytes:
    """A fragment of `dg`'s datagram at `offset_units` * 8 with `length` bytes of data."""
    ip = dg.copy()
    data = bytes(ip[IP].payload)[offset_units * 8 : offset_units * 8 + length]
    f = IP(src=ip.src, dst=ip.dst, id=ip.id, proto=17, flags="MF", frag=offset_units) / Raw(data)
    return bytes(ETH / f)


def test_an_ipv4_overlap_drops_that_fragment_and_the_datagram_still_completes() -> None:
    dg = datagram4()
    frames = frags4(dg)  # data 0-1375, 1376-2751, 2752-3007
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[0], 0) is None
    bad = _overlapping4(dg, 100, 1280)  # bytes 800-2079: across the first fragment's end
    assert add(ipf, bad, 9) == Refused("ipf_overlap")
    assert add(ipf, frames[1], 1) is None
    done = add(ipf, frames[2], 2)
    assert isinstance(done, Reassembled) and done.packet == bytes(ETH / dg)
    assert done.frags == [0, 1, 2]
    assert ipf.stats()["v4"]["ipf_overlap"] == 1


def test_an_ipv4_fragment_covering_a_held_one_is_an_overlap() -> None:
    dg = datagram4()
    frames = frags4(dg)
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[1], 1) is None  # 1376-2751
    assert add(ipf, _overlapping4(dg, 168, 1600), 9) == Refused("ipf_overlap")  # 1344-2943


def test_an_ipv6_overlap_discards_the_whole_datagram_and_what_comes_later() -> None:
    dg = datagram6()
    frames = frags6(dg)
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[0], 0) is None
    assert add(ipf, frames[1], 1) is None
    # the second fragment again, moved 8 bytes back: overlaps both held ones
    f = Ether(frames[1])
    f[IPv6ExtHdrFragment].offset -= 1
    assert add(ipf, bytes(f), 9) == Refused("ipf_overlap", 3)
    assert ipf.held == 0
    assert add(ipf, frames[2], 2) == Refused("ipf_overlap")  # RFC 5722: those still to come
    assert ipf.stats()["v6"]["ipf_overlap"] == 4
    assert ipf.dump()[0].endswith("num_fragments=0,state=reassemble fail)")
    assert ipf.expire(15.0) == 0 and len(ipf) == 0  # nothing held: no timeout drops


# -- limits ------------------------------------------------------------------------------
def test_a_small_fragment_that_is_not_the_last_is_too_small() -> None:
    dg = datagram4()
    frames = frags4(dg, 1000)  # 1020 bytes of IP per fragment
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[0], 0) == Refused("ipf_too_small")
    assert add(ipf, frames[-1], 1) is None  # the last may be small
    assert ipf.stats()["v4"]["ipf_too_small"] == 1
    ipf.set_min_frag(4, 1000)
    out = feed(ipf, frames, list(range(len(frames) - 1)))
    assert isinstance(out[-1], Reassembled) and out[-1].packet == bytes(ETH / dg)


def test_ipv6_minimum_is_1280() -> None:
    ipf: Ipf[int] = Ipf()
    frames = frags6(datagram6(), 1240)  # 1232 of IP
    assert add(ipf, frames[0], 0) == Refused("ipf_too_small")
    assert ipf.stats()["v6"]["ipf_too_small"] == 1
    assert ipf.stats()["min_frag_size"] == {"v4": 1200, "v6": 1280}


def test_a_list_that_does_not_complete_in_time_is_dropped() -> None:
    frames = frags4(datagram4())
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frames[0], 0, now=100.0) is None
    assert add(ipf, frames[2], 2, now=110.0) is None
    assert ipf.expire(114.9) == 0
    assert ipf.expire(115.0) == 2
    assert ipf.held == 0 and len(ipf) == 0
    assert ipf.stats()["v4"]["ipf_timeout"] == 2
    # the straggler starts a list of its own, which times out in turn
    assert add(ipf, frames[1], 1, now=116.0) is None
    assert ipf.held == 1


def test_add_drops_expired_lists_itself() -> None:
    frames = frags4(datagram4())
    ipf: Ipf[int] = Ipf(timeout=5.0)
    assert add(ipf, frames[0], 0, now=0.0) is None
    assert add(ipf, frames[1], 1, now=6.0) is None  # the first list is gone, not joined
    assert add(ipf, frames[2], 2, now=6.0) is None
    assert ipf.stats()["v4"]["ipf_timeout"] == 1 and ipf.held == 2


def test_too_many_fragments_held_refuses_new_ones() -> None:
    ipf: Ipf[int] = Ipf(max_frags=3)
    lists = [frags4(datagram4(ident=i)) for i in range(4)]
    for i in range(3):
        assert add(ipf, lists[i][0], i) is None
    assert len(ipf) == 3
    assert add(ipf, lists[3][0], 3) == Refused("ipf_too_many")
    assert add(ipf, lists[0][1], 4) == Refused("ipf_too_many")  # even for a known list
    assert ipf.stats()["v4"]["ipf_too_many"] == 2
    assert ipf.expire(15.0) == 3
    assert add(ipf, lists[3][0], 5) is None


def test_abandoned_ipv6_lists_count_against_the_list_limit() -> None:
    ipf: Ipf[int] = Ipf(max_frags=2)
    for ident in (1, 2):
        frames = frags6(datagram6(ident=ident))
        assert add(ipf, frames[0], 0) is None
        f = Ether(frames[1])
        f[IPv6ExtHdrFragment].offset -= 1
        assert add(ipf, bytes(f), 1) == Refused("ipf_overlap", 2)
    assert ipf.held == 0 and len(ipf) == 2
    assert add(ipf, frags6(datagram6(ident=3))[0], 2) == Refused("ipf_too_many")


def test_one_datagram_may_have_only_so_many_fragments() -> None:
    ipf: Ipf[int] = Ipf(min_frag_size={6: 400})
    cap = ipf.max_list_frags(6)
    assert cap == -(-(65535 - 48) // (400 - 48))
    assert Ipf().max_list_frags(4) == 58  # Open vSwitch's, for 1200
    # a long hop-by-hop header before each fragment header leaves little room for data
    hbh = IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * 190)])
    frames = [
        bytes(
            ETH
            / IPv6(src="fd00::1", dst="fd00::2")
            / hbh
            / IPv6ExtHdrFragment(nh=17, id=1, m=1, offset=i * 19)
            / Raw(b"d" * 152)
        )
        for i in range(cap + 1)
    ]
    assert len(frames[0]) - 14 == 400
    out = feed(ipf, frames, list(range(cap + 1)))
    assert out[:cap] == [None] * cap
    assert out[cap] == Refused("ipf_too_many")


# -- bad fragments -----------------------------------------------------------------------
def test_bad_fragments_are_refused() -> None:
    dg = datagram4()
    frames = frags4(dg)
    ipf: Ipf[int] = Ipf()
    broken = bytearray(frames[0])
    broken[14 + 10] ^= 0xFF  # header checksum
    assert add(ipf, bytes(broken), 0) == Refused("ipf_bad")
    odd = Ether(frames[0])
    odd[IP].remove_payload()
    odd = odd / Raw(b"q" * 1301)  # not a multiple of 8, yet more fragments follow
    odd[IP].len = odd[IP].chksum = None
    assert add(ipf, bytes(odd), 1) == Refused("ipf_bad")
    assert add(ipf, frames[2], 2) is None  # the end: byte 3008
    short_end = _overlapping4(dg, 100, 8)
    f = Ether(short_end)
    f[IP].flags = 0  # a second, earlier end
    f[IP].chksum = None
    assert add(ipf, bytes(f), 3) == Refused("ipf_bad")
    beyond = _overlapping4(dg, 400, 1200)  # past the known end
    assert add(ipf, beyond, 4) == Refused("ipf_bad")
    huge = IP(src="10.0.0.1", dst="10.0.0.2", id=7, proto=17, frag=8100) / Raw(b"h" * 1200)
    assert add(ipf, bytes(ETH / huge), 5) == Refused("ipf_bad")  # beyond 65,535 bytes
    assert ipf.stats()["v4"]["ipf_bad"] == 5
    assert ipf.held == 1


def test_settings_are_checked_and_name_the_field() -> None:
    ipf: Ipf[int] = Ipf()
    with pytest.raises(ValueError, match="min_frag_size"):
        ipf.set_min_frag(4, 100)
    with pytest.raises(ValueError, match="version"):
        ipf.set_min_frag(5, 1200)
    with pytest.raises(ValueError, match="max_frags"):
        ipf.set_max_frags(10**6)
    assert ipf.stats()["min_frag_size"] == {"v4": 1200, "v6": 1280}
    assert ipf.max_frags == 1000


def test_stats_and_dump_read_as_open_vswitch_prints_them() -> None:
    ipf: Ipf[int] = Ipf()
    assert add(ipf, frags4(datagram4())[1], 0, zone=3) is None
    (line,) = ipf.dump()
    assert line == (
        "(src=10.0.0.1,dst=10.0.0.2,recirc_id=0,ip_id=7,dl_type=0x800,zone=3,nw_proto=17,"
        "num_fragments=1,state=other frag)"
    )
    s = ipf.stats()
    assert s["fragments"] == 1 and s["lists"] == 1 and s["enabled"] == {"v4": True, "v6": True}
    assert ipf.flush() == 1 and ipf.held == 0 and len(ipf) == 0


# -- the fragments that leave --------------------------------------------------------------
def _udp_ok(ip: Packet) -> bool:
    """The UDP checksum of a whole datagram, checked by scapy."""
    got = ip[UDP].chksum
    again = ip.__class__(bytes(ip))
    again[UDP].chksum = None
    return got == ip.__class__(bytes(again))[UDP].chksum


def test_fragments_leave_as_they_came() -> None:
    frames = frags4(datagram4())
    frames[-1] += b"\0" * 8  # padding stays
    ipf: Ipf[int] = Ipf()
    done = feed(ipf, frames, [2, 1, 0])[-1]
    assert isinstance(done, Reassembled)
    assert done.fragments() == frames


def test_a_translation_of_the_datagram_carries_over_to_its_ipv4_fragments() -> None:
    dg = datagram4()
    frames = frags4(dg)
    ipf: Ipf[int] = Ipf()
    done = feed(ipf, frames, [1, 2, 0])[-1]
    assert isinstance(done, Reassembled)
    nat = Ether(done.packet)
    nat[IP].src, nat[IP].dst, nat[UDP].sport = "192.0.2.1", "198.51.100.7", 61000
    nat[IP].chksum = nat[UDP].chksum = None
    out = done.fragments(bytes(nat))
    assert len(out) == 3
    for f, orig in zip(out, frames, strict=True):
        ip = Ether(f)[IP]
        assert (ip.src, ip.dst) == ("192.0.2.1", "198.51.100.7")
        chk = ip.chksum
        ip.chksum = None
        assert IP(bytes(ip))[IP].chksum == chk  # each header's checksum is right
        assert Ether(f)[IP].frag == Ether(orig)[IP].frag
    (whole,) = defragment([Ether(f)[IP] for f in out])
    assert whole[UDP].sport == 61000 and whole[UDP].dport == 2000
    assert bytes(whole[UDP].payload) == b"x" * 3000
    assert _udp_ok(whole)


def test_a_translation_carries_over_to_ipv6_fragments() -> None:
    dg = datagram6(hbh=True)
    frames = frags6(dg)
    ipf: Ipf[int] = Ipf()
    done = feed(ipf, frames, [0, 2, 1])[-1]
    assert isinstance(done, Reassembled)
    nat = Ether(done.packet)
    nat[IPv6].src, nat[UDP].dport = "fd00::99", 53
    nat[UDP].chksum = None
    out = done.fragments(bytes(nat))
    assert [Ether(f)[IPv6].src for f in out] == ["fd00::99"] * 3
    ipf2: Ipf[int] = Ipf()
    again = feed(ipf2, out, [0, 1, 2])[-1]  # put together again: the translated datagram
    assert isinstance(again, Reassembled)
    assert again.packet == bytes(nat)
    whole = Ether(again.packet)[IPv6]
    assert whole[UDP].dport == 53 and _udp_ok(whole)


def test_a_translation_may_not_change_the_length() -> None:
    frames = frags4(datagram4())
    ipf: Ipf[int] = Ipf()
    done = feed(ipf, frames, [0, 1, 2])[-1]
    assert isinstance(done, Reassembled)
    with pytest.raises(ValueError, match="translated"):
        done.fragments(done.packet + b"x")
