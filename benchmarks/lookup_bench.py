"""Classifier lookup: µs per packet with 1k/10k/100k flows over 1/10/50 masks,
through the decision cache (hit) and straight into the classifier (miss),
beside a trivial baseline measured in the same run: one dict lookup of the key.

Run: .venv/bin/python benchmarks/lookup_bench.py [--quick]
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import per_call_us
from vnet.packet import flowkey as fk
from vnet.pipeline import Flow, Instructions, Match, NullHooks, Pipeline, parse_action

OUT = Instructions((parse_action("output:2"),))


def build(n_flows: int, n_masks: int, seed: int = 1) -> tuple[Pipeline, list[tuple[int, ...]]]:
    rnd = random.Random(seed)
    # mask i: IPv4 destination prefix of length 32 - (i % 24), optionally with tp_dst and in_port
    masks = []
    for i in range(n_masks):
        plen = 32 - (i % 24)
        masks.append((plen, i // 24 % 2 == 1, i // 48 % 2 == 1))
    flows = []
    keys = []
    for j in range(n_flows):
        plen, with_port, with_in = masks[j % n_masks]
        dst = rnd.getrandbits(32)
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        spec: dict[str, int | tuple[int, int]] = {
            "eth_type": 0x0800,
            "ip_proto": 6,
            "ipv4_dst": (dst & mask, mask),
        }
        tp = rnd.randrange(1, 65535)
        if with_port:
            spec["tcp_dst"] = tp
        if with_in:
            spec["in_port"] = 1
        flows.append(Flow(Match.of(**spec), OUT, priority=rnd.randrange(1, 1000)))
        key = [0] * fk.KEY_LEN
        key[fk.IN_PORT], key[fk.ETH_TYPE], key[fk.IP_PROTO] = 1, 0x0800, 6
        key[fk.IPV4_DST], key[fk.TP_DST] = dst, tp
        keys.append(tuple(key))
    p = Pipeline(n_tables=1)
    p.add_flows(flows)
    return p, keys


def measure(n: int, m: int) -> str:
    hooks = NullHooks()
    t0 = time.perf_counter()
    p, keys = build(n, m)
    build_s = time.perf_counter() - t0
    sample = keys[:2000]
    it = iter(range(10**9))
    cls = p.tables[0].classifier

    def miss() -> object:
        return cls.lookup(sample[next(it) % len(sample)])

    for k in sample:
        p.decide(k, hooks)

    def hit() -> object:
        return p.decide(sample[next(it) % len(sample)], hooks)

    table = {k: 1 for k in sample}

    def base() -> object:
        return table.get(sample[next(it) % len(sample)])

    n_calls = 20_000
    t_miss = per_call_us(miss, n_calls, 3)
    t_hit = per_call_us(hit, n_calls, 3)
    t_base = per_call_us(base, n_calls, 3)
    return (
        f"{n:>8}{m:>7}{cls.subtable_count:>10}{t_miss:>10.2f}{t_hit:>9.2f}{t_base:>9.2f}"
        f"{t_miss / t_base:>10.1f}x{t_hit / t_base:>9.1f}x   (built in {build_s:.1f}s)"
    )


def main() -> None:
    quick = "--quick" in sys.argv
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    print(
        "miss = classifier lookup (no cache); hit = decision-cache hit; dict = one dict.get of the key"
    )
    print(
        f"{'flows':>8}{'masks':>7}{'subtables':>10}{'miss µs':>10}{'hit µs':>9}{'dict µs':>9}{'miss/dict':>11}{'hit/dict':>10}"
    )
    for n in sizes:
        for m in (1, 10, 50):
            print(measure(n, m), flush=True)


if __name__ == "__main__":
    main()
