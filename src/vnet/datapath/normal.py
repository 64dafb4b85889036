"""The `normal` action: an 802.1Q learning bridge, run inside translation.

`normal` is called by the pipeline while it translates a packet (the switch
is the pipeline's `Hooks`), so what it decides becomes datapath operations in
the same cached decision as everything else:

1. Ingress VLAN: an access port puts untagged frames in its VLAN and refuses
   tagged ones; a trunk accepts tags in its allowed list and puts untagged
   frames in its native VLAN (refused without one).  Priority-tagged frames
   (VID 0) count as untagged.
2. Learning: translation does not change the table (a trace must not learn);
   the decision carries a `("learn", vlan, mac, port)` operation that the
   datapath replays on every packet, so a cached decision still refreshes the
   entry's age; a new entry or a move invalidates cached decisions.
3. Forwarding: a known unicast destination in the same VLAN goes to its port
   (never back out of the input port); everything else floods to the live
   ports that carry the VLAN, except the input port (split horizon) and
   no-flood ports.  Frames never cross VLANs: every candidate port is checked
   with `PortConfig.carries`.
4. Egress VLAN: access ports and a trunk's native VLAN get the frame untagged,
   other trunk VLANs tagged; outputs are grouped by tagging so the frame is
   popped or pushed once per group (a `clone` per group when both exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..packet import flowkey as fk
from ..packet.addr import mac_str
from ..pipeline.context import XContext
from .mac_table import MacTable
from .port import Port, VlanMode

__all__ = ["ingress_vlan", "normal"]

VLAN_PRESENT = 0x1000
BROADCAST = 0xFFFFFFFFFFFF


def ingress_vlan(port: Port, vlan_vid: int) -> int | None:
    """The VLAN a frame belongs to on this port (0 = untagged network), None if refused."""
    vid = vlan_vid & 0xFFF if vlan_vid & VLAN_PRESENT else 0
    cfg = port.config
    if cfg.vlan_mode == VlanMode.ACCESS:
        return cfg.tag if vid == 0 else None
    if vid == 0:
        return cfg.native_vlan
    if cfg.trunks and vid not in cfg.trunks:
        return None
    return vid


def _tagged_on(port: Port, vlan: int) -> bool:
    cfg = port.config
    return cfg.vlan_mode == VlanMode.TRUNK and vlan != 0 and vlan != cfg.native_vlan


def normal(x: XContext, ports: Mapping[int, Port], macs: MacTable) -> None:
    f = x.fields
    in_no = f[fk.IN_PORT]
    in_port = ports.get(in_no)
    if in_port is None:
        x.halt("normal_unknown_in_port")
        return
    vlan = ingress_vlan(in_port, f[fk.VLAN_VID])
    if vlan is None:
        x.note(f"normal: VLAN {f[fk.VLAN_VID] & 0xFFF} not allowed on {in_port.name}")
        x.halt("vlan_not_allowed")
        return
    src, dst = f[fk.ETH_SRC], f[fk.ETH_DST]
    if not src & (1 << 40):
        x.emit(("learn", vlan, src, in_no))
    out: list[int] = []
    if not dst & (1 << 40):
        p = macs.lookup(vlan, dst)
        if p is not None:
            if p == in_no:
                x.note("normal: destination is on the input port: dropped")
                x.halt("normal_same_port")
                return
            port = ports.get(p)
            if port is not None and port.live and port.config.carries(vlan):
                out = [p]
                x.note(f"normal: {mac_str(dst)} is on port {p}")
    if not out:
        out = [
            no
            for no, p in ports.items()
            if no != in_no and p.live and not p.config.no_flood and p.config.carries(vlan)
        ]
        x.note(f"normal: flood in VLAN {vlan} to {out or 'no port'}")
    if not out:
        x.halt("normal_no_port")
        return
    pcp = (f[fk.VLAN_PCP] & 7) if f[fk.VLAN_VID] & VLAN_PRESENT else 0
    tagged_in = bool(f[fk.VLAN_VID] & VLAN_PRESENT)
    untagged = [p for p in out if not _tagged_on(ports[p], vlan)]
    tagged = [p for p in out if _tagged_on(ports[p], vlan)]
    groups: list[tuple[Any, ...]] = []
    if untagged:
        ops: list[tuple[Any, ...]] = [("pop_vlan",)] if tagged_in else []
        groups.append((*ops, *(("output", p) for p in untagged)))
    if tagged:
        if tagged_in and (f[fk.VLAN_VID] & 0xFFF) == vlan:
            ops = []
        elif tagged_in:
            ops = [("set", fk.VLAN_VID, VLAN_PRESENT | vlan)]
        else:
            ops = [("push_vlan", 0x8100, vlan | (pcp << 13))]
        groups.append((*ops, *(("output", p) for p in tagged)))
    if len(groups) == 1:
        for op in groups[0]:
            x.emit(op)
    else:
        for g in groups:
            x.emit(("clone", g))
