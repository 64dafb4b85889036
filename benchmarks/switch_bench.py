"""vnet switch vs Open vSwitch (userspace, datapath_type=netdev) vs the Linux bridge.

One run builds the same topology three times side by side -- two network
namespaces, each joined by a veth pair to the switch under test -- and
measures, with the namespace ends on their default offloads:

* small packets: 64-byte UDP frames (18-byte payloads) to a bound UDP socket
  that never reads (a discard sink: the receiving kernel drops each datagram
  at the full socket, instead of answering it with an ICMP port-unreachable
  -- work that would land on whatever transmits into the receiving veth,
  i.e. on the switch under test), counted by the receiving interface:
  packets per second.  Three loads: trafgen (netsniff-ng's generator, from
  a's end through a transmit ring) flooding as fast as it can, which is
  faster than any of the switches forwards, so the figure is the switch's
  forwarding rate -- with one flow, then with 1,000 (the UDP source port
  stepping through 1000-1999, so each frame of a batch is a different
  flow); and one application's UDP socket (a Python loop of `sendto`),
  which offers less than the switches can forward, so its figure is mostly
  that sender's rate and shows what a switch costs the sending CPU.  The switches take turns, in rotating order,
  for several short rounds, and each figure is the median of its rounds: the
  machine's speed drifts by more than the differences measured, and turns
  spread the drift evenly;
* TCP throughput: iperf3, one stream;

first with `normal` forwarding (MAC learning), then with 1,000 flows
installed (998 that never match, two that forward).  It prints every figure,
what share of the frames sent each switch delivered, the ratios vnet/OVS and
vnet/bridge, and for vnet reconciles what entered the switch with what left
it and what its drop counters say.

Open vSwitch runs from Debian's openvswitch-switch in a private directory
(its own ovsdb-server and ovs-vswitchd, started and stopped here by PID).
Needs root.  Usage: `python benchmarks/switch_bench.py [--seconds 3] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys

from _rig import LOADS, Rig, linux_bridge, ovs_switch, ratio, rotate, stop_on_sigterm, vnet_switch

SECONDS = 3.0
ROUNDS = 5
FLOWS = [f"priority=100,ip,nw_dst=10.99.{i // 250}.{i % 250 + 1},actions=drop" for i in range(998)]
FLOWS += ["priority=10,in_port=1,actions=output:2", "priority=10,in_port=2,actions=output:1"]


def _print(rigs: dict[str, Rig]) -> None:
    for name, r in rigs.items():
        print(f"  {name:13s} TCP {statistics.median(r.tcp_gbps):7.2f} Gbit/s")
        for load in LOADS:
            got, sent = r.got[load], r.sent[load]
            print(f"    {load:36s} {statistics.median(got):7.1f} kpps received "
                  f"(rounds {min(got):.0f}-{max(got):.0f}), {100 * sum(got) / sum(sent):5.1f}% "
                  f"of the {statistics.median(sent):.1f} kpps sent")  # fmt: skip
    v = rigs["vnet"]
    for peer in ("ovs-netdev", "linux-bridge"):
        if peer not in rigs:
            continue
        p = rigs[peer]
        vt, pt = statistics.median(v.tcp_gbps), statistics.median(p.tcp_gbps)
        tcp = f"{vt / pt:.2f}x" if pt else "inf (the peer's TCP stalled)"
        print(f"  vnet/{peer}: TCP {tcp}")
        for load in LOADS:
            print(f"    {load:36s} {ratio(v.got[load], p.got[load])}")


def _rigs(flows: bool) -> dict[str, contextlib.AbstractContextManager[Rig]]:
    installed = FLOWS if flows else None
    rigs = {"vnet": vnet_switch(installed), "ovs-netdev": ovs_switch(installed)}
    return rigs if flows else {**rigs, "linux-bridge": linux_bridge()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS, help="length of one round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="small-packet rounds per switch")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("switch_bench needs root (network namespaces, Open vSwitch)")
    for flows in (False, True):
        label = "1,000 installed flows" if flows else "normal (MAC learning)"
        print(f"\n== {label}: small packets {args.rounds} rounds x {args.seconds:g} s per switch "
              f"and load, TCP {2 * args.seconds:g} s ==")  # fmt: skip
        with stop_on_sigterm(), contextlib.ExitStack() as stack:
            rigs = {name: stack.enter_context(cm) for name, cm in _rigs(flows).items()}
            for rig in rigs.values():
                rig.ready()
            for load in LOADS:
                rotate(rigs, args.rounds, lambda rig, load=load: rig.flood(load, args.seconds))
            for rig in rigs.values():
                rig.tcp(2 * args.seconds)
            extra = rigs["vnet"].report()
            _print(rigs)
            print(f"  vnet packets neither delivered nor counted as drops: {extra['unaccounted']}")


if __name__ == "__main__":
    main()
