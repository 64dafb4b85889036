"""The signature cache changes nothing but speed, through the connection tracker too.

Two switches get the same random life through stateful pipelines -- the
classic firewall (`ct(table=1)`, commit new, established both ways, invalid
dropped), a `ct(commit)` without `table=` followed by outputs, source NAT,
a `ct(table=)` that only reads and whose `+new` answer outputs, then commits --
one with the cache (`fast`, where a cached `ct` decision tracks each frame
and reuses what the recirculation decided), one parsing and deciding every
frame.  The traffic is TCP connections opened, streamed, acknowledged in
batches, with segments out of the window (far off, or in order past a window closed down), resets right and wrong, FINs,
UDP that nobody answers and UDP that is answered; time moves on (timeouts),
and the tracker is flushed now and then.  After every batch both must have
sent the same frames, each flow's in the same order, and agree on every
counter: drops by reason, rules, tables, and the tracker's table and
statistics.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from vnet.datapath import PortConfig, Switch
from vnet.datapath.conntrack import Tracker, format_conn
from vnet.datapath.ports.memory import MemoryDevice
from vnet.packet.flowkey import signature
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow

FIREWALL = [
    "table=0,priority=100,ip,ct_state=-trk,tcp,actions=ct(table=1,zone=1)",
    "table=0,priority=100,in_port=1,udp,tp_dst=53,actions=ct(commit,zone=2),output:2",
    "table=0,priority=100,udp,tp_dst=7,ct_state=-trk,actions=ct(table=2,zone=3,nat)",
    "table=0,priority=90,udp,actions=ct(table=1,zone=1)",
    "table=1,priority=10,in_port=1,ip,ct_state=+new+trk,actions=ct(commit,zone=1),output:2",
    "table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2",
    "table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1",
    "table=1,priority=20,ip,ct_state=+inv+trk,actions=drop",
    "table=2,priority=10,in_port=1,ct_state=+new+trk,"
    "actions=ct(commit,zone=3,nat(src=10.9.0.1-10.9.0.2:5000-5001)),output:2",
    "table=2,priority=10,in_port=1,ct_state=+est+trk,actions=output:2",
    "table=2,priority=10,in_port=2,ct_state=+est+trk,actions=output:1",
    "table=0,priority=100,udp,tp_dst=11,ct_state=-trk,actions=ct(table=3,zone=5)",
    "table=0,priority=100,udp,tp_src=11,ct_state=-trk,actions=ct(table=3,zone=5)",
    "table=3,priority=10,in_port=1,ct_state=+new+trk,actions=output:2,ct(commit,zone=5)",
    "table=3,priority=10,in_port=1,ct_state=+est+trk,actions=output:2",
    "table=3,priority=10,in_port=2,ct_state=+est+trk,actions=output:1",
]
A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"
IPS = ("10.0.0.1", "10.0.0.2")


def frame(d: int, l4: object, payload: bytes = b"", ttl: int = 64) -> bytes:
    src, dst = (A, B) if d == 0 else (B, A)
    ips = IPS if d == 0 else IPS[::-1]
    ip = IP(src=ips[0], dst=ips[1], ttl=ttl)
    return bytes(Ether(src=src, dst=dst) / ip / l4 / payload)  # type: ignore[operator]


class Conn:
    """One TCP conversation: its sequence numbers, and segments good and bad."""

    def __init__(self, rng: random.Random, sport: int) -> None:
        self.rng = rng
        self.sport = sport
        self.seq = [rng.randrange(1 << 32), rng.randrange(1 << 32)]
        self.open = False
        self.win = [65535, 65535]  # what each end advertises

    def seg(
        self, d: int, flags: str, data: bytes = b"", seq: int | None = None, ack: int | None = None
    ) -> bytes:
        sp, dp = (self.sport, 80) if d == 0 else (80, self.sport)
        s = self.seq[d] if seq is None else seq
        if ack is None:
            ack = self.seq[1 - d] if "A" in flags else 0
        f = frame(d, TCP(sport=sp, dport=dp, flags=flags, seq=s, ack=ack, window=self.win[d]), data)
        if seq is None:
            self.seq[d] = (self.seq[d] + len(data) + ("S" in flags) + ("F" in flags)) % (1 << 32)
        return f

    def batches(self) -> list[tuple[int, list[bytes]]]:
        """The next few batches of this conversation: (direction, frames)."""
        rng = self.rng
        if not self.open:
            self.open = True
            return [(0, [self.seg(0, "S")]), (1, [self.seg(1, "SA")]), (0, [self.seg(0, "A")])]
        first = self.seq[0]
        # now and then b's acknowledgements close its window down: a's next burst runs
        # past it in order, with the same ack and window on every segment
        self.win[1] = 65535 if rng.random() < 0.7 else rng.choice([1, 30, 100])
        burst = [
            self.seg(0, "PA", rng.randbytes(rng.randint(1, 40)))
            if rng.random() < 0.8
            else self.seg(0, "A")  # another signature of the same connection, in between
            for _ in range(rng.randint(1, 12))
        ]
        odd = rng.random()
        if odd < 0.15:  # out of the window, in the middle of the burst
            far = (self.seq[0] + (1 << 30)) % (1 << 32)
            burst.insert(rng.randrange(len(burst) + 1), self.seg(0, "PA", b"x", seq=far))
        elif odd < 0.2:  # a reset with a wrong sequence number: invalid, dropped
            burst.append(self.seg(0, "R", seq=(self.seq[0] + 100000) % (1 << 32)))
        elif odd < 0.25:  # a right one: the connection closes
            burst.append(self.seg(0, "R"))
            self.open = False
        elif odd < 0.3:
            burst.append(self.seg(0, "FA"))
            self.open = False
        elif odd < 0.35:  # a reset in the middle: what follows it meets a closed connection
            burst.insert(rng.randrange(len(burst)), self.seg(0, "R"))
        sent = (self.seq[0] - first) % (1 << 32)
        acks = [  # acknowledged a part at a time: the same headers, a growing ack
            self.seg(1, "A", ack=(first + k) % (1 << 32))
            for k in sorted(rng.sample(range(sent), min(sent, rng.randint(0, 3))))
        ]
        out = [(0, burst), (1, [*acks, self.seg(1, "A")])]
        if not self.open and rng.random() < 0.5:
            out.append((1, [self.seg(1, "FA")]))
            out.append((0, [self.seg(0, "A")]))
        return out


def udp(rng: random.Random) -> tuple[int, list[bytes]]:
    d = 0 if rng.random() < 0.7 else 1
    sp, dp = rng.choice([(1000, 53), (1001, 7), (1002, 9), (1003, 11)])
    if d:
        sp, dp = dp, sp
    return d, [
        frame(d, UDP(sport=sp, dport=dp), rng.randbytes(8)) for _ in range(rng.randint(1, 8))
    ]


def build(
    fast: bool, flows: list[str] = FIREWALL
) -> tuple[Switch, list[object], list[MemoryDevice]]:
    sw = Switch("sw", fail_mode="secure")
    sw.fast = fast
    sw.conntrack = Tracker(seed=7)  # NAT's choices alike on both
    devs = [MemoryDevice(n, capacity=1 << 20) for n in "ab"]
    ports: list[object] = [
        sw.add_port(PortConfig(name=n, kind="memory", port_security=False), d)
        for n, d in zip("ab", devs, strict=True)
    ]
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in flows])
    return sw, ports, devs


def by_flow(frames: list[bytes]) -> dict[object, list[bytes]]:
    out: dict[object, list[bytes]] = {}
    for f in frames:
        out.setdefault(signature(f) or f, []).append(f)
    return out


def windows(c: Any) -> tuple[tuple[int, ...], ...]:
    """Both ends' window tracking of a TCP connection."""
    return tuple((p.seqlo, p.seqhi, p.max_win, p.wscale, p.state) for p in c.peers or ())


def state(sw: Switch, devs: list[MemoryDevice]) -> dict[str, object]:
    now = sw.now
    return {
        "sent": [by_flow(d.frames()) for d in devs],
        "drops": dict(sw.drops),
        "rx": sw.rx_packets,
        "rules": sorted((str(r.flow), r.packet_count, r.byte_count) for r in sw.pipeline.rules()),
        "tables": [(t.lookups, t.matches) for t in sw.pipeline.tables[:4]],
        "ct": sw.conntrack.stats(now),
        "conns": sorted(
            (format_conn(c, now), tuple(c.packets), tuple(c.nbytes), c.expires, windows(c))
            for c in sw.conntrack.conns()
        ),
    }


def run(seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    fast, fports, fdevs = build(True)
    full, sports, sdevs = build(False)
    conns = [Conn(random.Random(seed * 100 + i), 40000 + i) for i in range(3)]
    now, total = 0.0, 0
    for _ in range(50):
        now += rng.choice([0.0, 0.001, 1.0, 40.0])
        if rng.random() < 0.05:
            for sw in (fast, full):
                sw.conntrack.flush()
        if rng.random() < 0.7:
            batches = rng.choice(conns).batches()
        else:
            batches = [udp(rng)]
        for d, frames in batches:
            batch = [(b"", f) for f in frames]
            total += len(batch)
            fast.receive_batch(fports[d], batch, now)  # type: ignore[arg-type]
            full.receive_batch(sports[d], batch, now)  # type: ignore[arg-type]
        if rng.random() < 0.3:
            assert state(fast, fdevs) == state(full, sdevs)
    assert state(fast, fdevs) == state(full, sdevs)
    assert full.fast_hits == 0
    return total, fast.fast_hits


@pytest.mark.parametrize("seed", range(12))
def test_ct_fast_path_matches_full_path(seed: int) -> None:
    sent, hits = run(seed)
    assert hits > sent // 4  # the cache did take a share: the comparison was not vacuous


def test_ct_after_an_output_keeps_the_trackers_order_across_signatures() -> None:
    """Two signatures of one connection in one batch: one decided `output, ct(commit)`
    (its `ct` is not first, yet it reaches the tracker), the other `ct(table=)`.
    The tracker must see them in the order they came: the commit in the middle
    creates the connection the frame behind it finds."""
    flows = [
        "table=0,priority=100,in_port=1,udp,nw_ttl=64,actions=output:2,ct(commit,zone=6)",
        "table=0,priority=100,in_port=1,udp,nw_ttl=63,actions=ct(table=4,zone=6)",
        "table=4,priority=10,ct_state=+trk,actions=output:2",
    ]
    x, y = (frame(0, UDP(sport=1004, dport=12), b"12345678", ttl) for ttl in (64, 63))
    out, hits = [], []
    for fast in (True, False):
        sw, ports, devs = build(fast, flows)
        sw.receive_batch(ports[0], [(b"", x), (b"", y)], 1.0)  # type: ignore[arg-type]
        sw.conntrack.flush()
        sw.receive_batch(ports[0], [(b"", y), (b"", x), (b"", y)], 2.0)  # type: ignore[arg-type]
        out.append(state(sw, devs))
        hits.append(sw.fast_hits)
    fast_state, full_state = out
    assert hits == [3, 0]  # the second batch came from the cache
    assert fast_state == full_state
    # the later y finds what x committed: counted at x's commit and at that y's ct
    assert [c[1] for c in full_state["conns"]] == [(2, 0)]  # type: ignore[index]
