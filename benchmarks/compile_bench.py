"""The firewall's compile at scale: flows per chassis against the budget, compile time,
and a label change recompiled, localized and diffed against the chassis' flows (p50/p99):
the controller's path until the flow-mods are ready to send.

The model is `vnet.testing.secmodel`: 10,000 ports in 10 networks on 50
chassis, 100 security groups by label, 1,000 rules (a fifth of them in
ordered policies, with deny, reject, pass and logged rules).  Every
chassis hosts a port of every network, so each gets every network's
flows: the worst case per chassis.  The budget is 200,000 flows per
chassis; the count is printed, not asserted.

No root needed.  Usage: `python benchmarks/compile_bench.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

from vnet.compiler import Compiler, Memo, localize
from vnet.controller.reconcile import flow_diff
from vnet.model.objects import tunnel_iface
from vnet.testing.secmodel import relabel, secmodel

BUDGET = 200_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1,000 ports, 10 groups, 100 rules")
    ap.add_argument("--changes", type=int, default=50)
    args = ap.parse_args()
    ports, groups, rules = (1_000, 10, 100) if args.quick else (10_000, 100, 1_000)
    state = secmodel(ports, groups, rules)
    comp = Compiler()
    t0 = time.perf_counter()
    lflows = comp.compile(state)
    t_compile = time.perf_counter() - t0
    ch = state.get("chassis", "c0")
    bound = [p for p in state.all("port") if p.chassis == ch.id]
    ofports = {p.iface: i for i, p in enumerate(bound, 1)} | {tunnel_iface("geneve"): 1000}
    memo: Memo = {}
    t0 = time.perf_counter()
    flows = localize(lflows, state, ch, ofports, memo)
    t_local = time.perf_counter() - t0
    acl = sum(1 for lf in lflows if "acl" in lf.flow.origin or "stateful" in lf.flow.origin)
    print(f"model: {ports} ports, {groups} groups, {rules} rules, {len(state.all('network'))} networks, "
          f"{len(state.all('chassis'))} chassis")  # fmt: skip
    print(f"logical flows: {len(lflows)} ({acl} of the firewall's stages)")
    verdict = "within" if len(flows) <= BUDGET else "OVER"
    print(f"flows on chassis hv0: {len(flows)} ({verdict} the budget of {BUDGET})")
    print(f"full compile {t_compile:.2f} s, localize {t_local:.2f} s")
    times, parts = [], []
    for i in range(args.changes):
        state = relabel(state, f"p{(i * 7919) % ports}", f"a{i % groups}")
        t0 = time.perf_counter()
        lflows = comp.compile(state)
        t1 = time.perf_counter()
        new = localize(lflows, state, ch, ofports, memo)
        t2 = time.perf_counter()
        flow_diff(new, flows)
        t3 = time.perf_counter()
        flows = new
        times.append(t3 - t0)
        parts.append((t1 - t0, t2 - t1, t3 - t2))
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"label change -> chassis flows: p50 {statistics.median(times) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms over {len(times)} changes")  # fmt: skip
    c, lo, d = (statistics.median(x) * 1000 for x in zip(*parts, strict=True))
    print(f"  medians: compile {c:.0f} ms, localize {lo:.0f} ms, diff {d:.0f} ms")


if __name__ == "__main__":
    main()
