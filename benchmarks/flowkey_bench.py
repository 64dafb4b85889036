"""Flow-key extraction: µs per frame, beside a bare struct.unpack_from of the same headers.

The baseline reads the Ethernet, IPv4 and TCP headers with three precompiled
unpacks and builds nothing: the floor any Python parser of these bytes sits on.
Run: .venv/bin/python benchmarks/flowkey_bench.py
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import per_call_us
from vnet.packet import ethernet, extract, ipv4, ipv6, tcp, udp

N = 200_000

ETH = struct.Struct("!6s6sH").unpack_from
IP4 = struct.Struct("!BBHHHBBHII").unpack_from
TCP = struct.Struct("!HHIIHHHH").unpack_from


def frames() -> dict[str, bytes]:
    a, b = 0x0A000001, 0x0A000002
    v6a, v6b = 0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 2
    return {
        "eth/ipv4/tcp": ethernet.build(
            2, 1, 0x0800, ipv4.build(a, b, 6, tcp.build(1234, 80, b"x" * 10, ip_src=a, ip_dst=b))
        ),
        "eth/vlan/ipv4/udp": ethernet.build(
            2,
            1,
            0x0800,
            ipv4.build(a, b, 17, udp.build(53, 53, ip_src=a, ip_dst=b)),
            [ethernet.VlanTag(0x8100, 0, 0, 10)],
        ),
        "eth/ipv6/tcp": ethernet.build(
            2,
            1,
            0x86DD,
            ipv6.build(v6a, v6b, 6, tcp.build(1, 2, ip_src=v6a, ip_dst=v6b, ipv6=True)),
        ),
    }


def main() -> None:
    fs = frames()
    tcp4 = fs["eth/ipv4/tcp"]

    def baseline() -> object:
        return ETH(tcp4, 0), IP4(tcp4, 14), TCP(tcp4, 34)

    base = per_call_us(baseline, N)
    print(f"{'frame':<22}{'vnet extract µs':>16}{'baseline µs':>14}{'ratio':>8}")
    for name, f in fs.items():
        us = per_call_us(lambda f=f: extract(f, 1), N)
        print(f"{name:<22}{us:>16.3f}{base:>14.3f}{us / base:>8.2f}x")
    target = per_call_us(lambda: extract(tcp4, 1), N)
    print(
        f"\ntarget <= 2.0 µs/frame for eth/ipv4/tcp: {target:.3f} µs -> {'met' if target <= 2.0 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
