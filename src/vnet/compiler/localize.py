"""Logical flows + bindings -> the flows of one chassis.

`localize` is a pure function: the logical flows of the networks that have a
port on this chassis (a chassis carries no flows for networks it does not
host), plus the two physical stages -- `phy_in` maps each local OpenFlow
port to its network and logical port, `phy_out` maps a logical output port
back to its OpenFlow port.  OpenFlow port numbers come from the switch
(`ofports`: interface name -> number, read from its port description), so
the model never needs to know them.  Ports bound elsewhere get no `phy_out`
flow here yet: frames for them are dropped until tunnels join chassis.

Incremental like the compiler: the logical flows arrive sorted, so only the
two physical stages are sorted again with the bindings, and each binding's
flows are memoised (`memo`), so one changed port costs one binding, not all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model.objects import Chassis, Network, Port
from ..model.rules import State
from ..pipeline.actions import Output
from ..pipeline.flow import Flow
from .logical import LFlow, _Emit, _load, _order
from .stages import REG_INPORT, table

__all__ = ["Memo", "local_ports", "localize"]


def local_ports(
    state: State, chassis: Chassis, ofports: Mapping[str, int]
) -> list[tuple[Port, int]]:
    """The ports bound to `chassis` whose interface the switch has, with its number."""
    out = []
    for p in state.all("port"):
        if p.chassis == chassis.id and p.iface in ofports:
            out.append((p, ofports[p.iface]))
    return out


Memo = dict[tuple[str, str], tuple[tuple[int, int, int], list[LFlow]]]


def localize(
    lflows: Sequence[LFlow],
    state: State,
    chassis: Chassis,
    ofports: Mapping[str, int],
    memo: Memo | None = None,
) -> list[Flow]:
    """The flows of `chassis`, sorted as `Compiler.compile` sorts them.

    `memo` (kept by the caller across calls) remembers each binding's two flows
    on what they read -- network VNI, port key, OpenFlow port -- so a change to
    one port rebuilds one binding; entries of ports no longer here are dropped.
    """
    local = local_ports(state, chassis, ofports)
    nets = {p.network for p, _ in local}
    first, last = table("phy_in"), table("phy_out")
    head: list[LFlow] = []
    tail: list[LFlow] = []
    mid: list[Flow] = []
    for lf in lflows:  # sorted by table: only the two physical stages need merging
        if lf.network is not None and lf.network not in nets:
            continue
        t = lf.flow.table
        if t == first:
            head.append(lf)
        elif t == last:
            tail.append(lf)
        else:
            mid.append(lf.flow)
    seen = set()
    for port, ofport in local:
        net = state.get("network", port.network)
        sig = (net.segment_id or 0, port.tunnel_key or 0, ofport)
        k = (chassis.id, port.id)
        seen.add(k)
        hit = memo.get(k) if memo is not None else None
        if hit is not None and hit[0] == sig:
            flows = hit[1]
        else:
            flows = _binding(chassis, net, port, ofport)
            if memo is not None:
                memo[k] = (sig, flows)
        head.append(flows[0])
        tail.append(flows[1])
    if memo is not None:
        for k in [k for k in memo if k[0] == chassis.id and k not in seen]:
            del memo[k]
    head.sort(key=_order)
    tail.sort(key=_order)
    return [lf.flow for lf in head] + mid + [lf.flow for lf in tail]


def _binding(chassis: Chassis, net: Network, port: Port, ofport: int) -> list[LFlow]:
    """phy_in and phy_out for one port bound here."""
    vni, key = net.segment_id or 0, port.tunnel_key or 0
    e = _Emit("port", port, net.id)
    e(
        "phy_in", 100, f"binding on {chassis.name}", {"in_port": ofport},
        apply=[_load(REG_INPORT, key)], metadata=vni, goto="ls_in_port_sec",
    )  # fmt: skip
    e("phy_out", 100, f"binding on {chassis.name}", {"metadata": vni, "reg7": key},
      apply=[Output(ofport)])  # fmt: skip
    return e.out
