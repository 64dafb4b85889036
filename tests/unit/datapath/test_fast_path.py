"""The signature cache changes nothing but speed.

Two switches get the same random life -- traffic in batches from every port
(known, unknown, broadcast and moving MACs; UDP, TCP, ICMP, ARP; tagged and
untagged; forged sources), links going down and up, flows added and removed,
MACs aging -- one with the cache (`fast`), one parsing every frame.  After
every batch both must have sent the same frames to every port, each flow's
in the same order (the cache may group a batch's frames by flow, nothing
more), and agree on every counter: ports, drops, rules, tables, MAC table --
as read after `settle`, which every reader calls first; reads come after a
random third of the batches, so the cache's charges wait across batches,
ticks, link changes and flow changes in between.
"""

from __future__ import annotations

import dataclasses
import random

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnet.datapath import PortConfig, Switch
from vnet.datapath.port import Port, VlanMode
from vnet.datapath.ports.memory import MemoryDevice
from vnet.packet.flowkey import signature
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.groups import GroupMod, GroupModCommand
from vnet.pipeline.ofctl import parse_flow, parse_group

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(1, 7)]
PORTS = {
    "a": {},
    "b": {},
    "c": {"port_security": False},
    "d": {"vlan_mode": VlanMode.TRUNK, "trunks": frozenset({0, 10}), "native_vlan": 0},
    "e": {"tag": 10},
}
FLOWS = [
    "priority=200,udp,tp_dst=7,actions=drop",
    "priority=150,in_port=1,icmp,actions=output:3,output:2",
    "priority=150,tcp,tp_dst=80,actions=normal",
    # rewrites, VLAN push and pop, TTL, a group: cached whole like plain outputs
    "priority=160,in_port=2,udp,tp_dst=9,actions=mod_nw_dst:10.0.0.9,mod_tp_dst:99,output:3",
    "priority=160,in_port=1,tcp,tp_dst=81,actions=push_vlan:0x8100,set_field:4106->vlan_vid,output:4",
    "priority=160,in_port=4,dl_vlan=10,actions=strip_vlan,dec_ttl,mod_dl_src:02:00:00:00:00:99,output:1",
    "priority=160,in_port=3,icmp,actions=group:1",
    "priority=140,in_port=5,actions=set_field:3->ip_dscp,output:2,output:3",
]


HOME = {
    name: [m for i, m in enumerate(MACS) if i % len(PORTS) == k] for k, name in enumerate(PORTS)
}


def random_frame(rng: random.Random, src: str) -> bytes:
    dst = rng.choice([*MACS, "ff:ff:ff:ff:ff:ff"])
    l2 = Ether(src=src, dst=dst)
    if rng.random() < 0.2:
        l2 = l2 / Dot1Q(vlan=rng.choice([10, 20]))
    ip = IP(src=f"10.0.0.{rng.randint(1, 4)}", dst=f"10.0.0.{rng.randint(1, 4)}")
    kind = rng.random()
    if kind < 0.45:
        l4 = UDP(sport=rng.choice([1000, 1001]), dport=rng.choice([7, 9]))
    elif kind < 0.7:
        l4 = TCP(sport=2000, dport=rng.choice([80, 81]), flags=rng.choice(["S", "A", "PA"]))
    elif kind < 0.85:
        l4 = ICMP(type=8)
    else:
        return bytes(l2 / ARP(op=1, hwsrc=src, psrc="10.0.0.1", pdst="10.0.0.2"))
    return bytes(l2 / ip / l4)


class Traffic:
    """Per port a few conversations that repeat (what a cache is for), and strays."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.flows = {p: [random_frame(rng, rng.choice(HOME[p])) for _ in range(4)] for p in PORTS}

    def frame(self, port: str) -> bytes:
        rng = self.rng
        if rng.random() < 0.2:  # a stray: maybe a MAC that moved, or a forged one
            src = rng.choice(HOME[port]) if rng.random() < 0.7 else rng.choice(MACS)
            return random_frame(rng, src)
        f = bytearray(rng.choice(self.flows[port]))
        o = 18 if f[12:14] == b"\x81\x00" else 14
        if f[o - 2 : o] == b"\x08\x00":
            f[o + 4 : o + 6] = rng.randbytes(2)  # IP identification: one flow still
        return bytes(f) + bytes(rng.randint(0, 30))


def build(fast: bool) -> tuple[Switch, dict[str, MemoryDevice], dict[str, Port]]:
    sw = Switch("sw", mac_aging=6.0)
    sw.fast = fast
    devs, ports = {}, {}
    for name, cfg in PORTS.items():
        devs[name] = MemoryDevice(name, capacity=1 << 20)
        ports[name] = sw.add_port(PortConfig(name=name, kind="memory", **cfg), devs[name])  # type: ignore[arg-type]
    group = "group_id=1,type=select,bucket=mod_dl_dst:02:00:00:00:00:01,output:1,bucket=output:2"
    sw.commit([GroupMod(GroupModCommand.ADD, parse_group(group))])
    return sw, devs, ports


def by_flow(frames: list[bytes]) -> dict[object, list[bytes]]:
    """Frames in the order they left, per flow (signature; the frame itself if none)."""
    out: dict[object, list[bytes]] = {}
    for f in frames:
        out.setdefault(signature(f) or f, []).append(f)
    return out


def state(sw: Switch, devs: dict[str, MemoryDevice]) -> dict[str, object]:
    # no `settle` here: reading the pipeline or the MAC table settles what they owe
    return {
        "sent": {n: by_flow(d.frames()) for n, d in devs.items()},
        "ports": {
            p.name: (dataclasses.astuple(p.stats), dict(p.drops), p.locked_mac)
            for p in sw.ports.values()
        },
        "drops": dict(sw.drops),
        "rx": sw.rx_packets,
        "rules": sorted(
            (str(r.flow), r.packet_count, r.byte_count, r.used) for r in sw.pipeline.rules()
        ),
        "tables": [(t.lookups, t.matches) for t in sw.pipeline.tables[:4]],
        "groups": [(g.packet_count, g.byte_count) for g in sw.pipeline.groups.values()],
        "macs": sorted(sw.macs.dump(sw.now)),
    }


def run(seed: int) -> tuple[int, int]:
    """One random life on both switches; (frames sent, frames the cache took)."""
    rng = random.Random(seed)
    traffic = Traffic(random.Random(seed + 1000))
    total = 0
    fast, fdevs, fports = build(True)
    full, sdevs, sports = build(False)
    now = 0.0
    for _ in range(60):
        now += rng.choice([0.0, 0.5, 2.0])
        event = rng.random()
        for sw, ports in ((fast, fports), (full, sports)):
            sw.tick(now)
            if event < 0.05:
                p = ports["bc"[int(now) % 2]]
                sw.set_link(p, not p.link_up)
            elif event < 0.1:
                text = FLOWS[int(now) % len(FLOWS)]
                sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(text).flow)])
            elif event < 0.13:
                sw.commit([FlowMod(FlowModCommand.DELETE, parse_flow(FLOWS[0]).flow)])
        batch_port = rng.choice(list(PORTS))
        batch = [(b"", traffic.frame(batch_port)) for _ in range(rng.randint(1, 24))]
        total += len(batch)
        fast.receive_batch(fports[batch_port], batch, now)
        full.receive_batch(sports[batch_port], batch, now)
        if rng.random() < 0.3:  # in between, charges wait in the cache across batches
            assert state(fast, fdevs) == state(full, sdevs)
    assert state(fast, fdevs) == state(full, sdevs)
    assert full.fast_hits == 0
    return total, fast.fast_hits


def test_fast_path_matches_full_path() -> None:
    sent = hits = 0
    for seed in range(16):
        n, h = run(seed)
        sent, hits = sent + n, hits + h
    assert hits > sent // 10  # the cache did take a share: the comparison was not vacuous
