"""Logical flows + bindings -> the flows of one chassis.

`localize` is a pure function: the logical flows of the networks that have a
port on this chassis (a chassis carries no flows for networks it does not
host), plus the two physical stages -- `phy_in` maps each local OpenFlow
port to its network and logical port, `phy_out` maps a logical output port
back to its OpenFlow port.  OpenFlow port numbers come from the switch
(`ofports`: interface name -> number, read from its port description), so
the model never needs to know them.  Ports bound elsewhere get no `phy_out`
flow here yet: frames for them are dropped until tunnels join chassis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model.objects import Chassis, Port
from ..model.rules import State
from ..pipeline.actions import Output
from ..pipeline.flow import Flow
from .logical import LFlow, _Emit, _load, _order
from .stages import REG_INPORT

__all__ = ["local_ports", "localize"]


def local_ports(
    state: State, chassis: Chassis, ofports: Mapping[str, int]
) -> list[tuple[Port, int]]:
    """The ports bound to `chassis` whose interface the switch has, with its number."""
    out = []
    for p in state.all("port"):
        if p.chassis == chassis.id and p.iface in ofports:
            out.append((p, ofports[p.iface]))
    return out


def localize(
    lflows: Sequence[LFlow], state: State, chassis: Chassis, ofports: Mapping[str, int]
) -> list[Flow]:
    local = local_ports(state, chassis, ofports)
    nets = {p.network for p, _ in local}
    out = [lf for lf in lflows if lf.network is None or lf.network in nets]
    phys: list[LFlow] = []
    for port, ofport in local:
        net = state.get("network", port.network)
        vni, key = net.segment_id or 0, port.tunnel_key or 0
        e = _Emit("port", port, net.id)
        e(
            "phy_in", 100, f"binding on {chassis.name}", {"in_port": ofport},
            apply=[_load(REG_INPORT, key)], metadata=vni, goto="ls_in_port_sec",
        )  # fmt: skip
        e("phy_out", 100, f"binding on {chassis.name}", {"metadata": vni, "reg7": key},
          apply=[Output(ofport)])  # fmt: skip
        phys += e.out
    out += phys
    out.sort(key=_order)
    return [lf.flow for lf in out]
