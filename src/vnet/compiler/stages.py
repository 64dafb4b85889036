"""The logical pipeline, declared as data.

Each stage names the fields its flows may match and the stages its flows may
go to; table numbers are the stages' positions here and nowhere else.  Code
and tests speak of stage names.  `check` refuses a flow that matches a field
its stage did not declare or jumps to a stage it may not reach -- a compiler
bug caught where it is made, not on the wire.

Registers carry the logical context between stages, as OVN's do:
`metadata` the network (its VNI), `reg6` the logical input port and `reg7`
the logical output port (port tunnel keys, unique within a network; keys
with bit 15 set name a set of chassis to flood to), `reg5` flags (bit 0: the
frame came out of a tunnel, so it never goes back into one).  The `phy_*`
stages are the only chassis-specific ones (`localize` fills them): they map
OpenFlow ports and tunnels to logical ports and back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pipeline.actions import Resubmit
from ..pipeline.fields import lookup
from ..pipeline.flow import Flow

__all__ = [
    "FLAG_FROM_TUNNEL",
    "PIPELINE",
    "REG_FLAGS",
    "REG_INPORT",
    "REG_OUTPORT",
    "Stage",
    "StageError",
    "check",
    "table",
]

REG_INPORT = "reg6"
REG_OUTPORT = "reg7"
REG_FLAGS = "reg5"
FLAG_FROM_TUNNEL = 1

_L2 = ("metadata", REG_INPORT, "eth_src", "eth_dst", "eth_type")


@dataclass(frozen=True)
class Stage:
    name: str
    fields: tuple[str, ...]
    next: tuple[str, ...]
    doc: str


PIPELINE: tuple[Stage, ...] = (
    Stage(
        "phy_in",
        ("in_port", "tun_id", "tun_metadata0"),
        ("ls_in_port_sec", "ls_in_l2_lkup", "ls_out_port_sec"),
        "OpenFlow port -> network (metadata) and logical input port (reg6); "
        "a tunnel's VNI -> network, its Geneve option -> logical ports",
    ),
    Stage(
        "ls_in_port_sec",
        (*_L2, "ip_proto", "ipv4_src", "ipv6_src", "arp_spa", "arp_sha", "icmpv6_type"),
        ("ls_in_arp_rsp",),
        "admit only the port's own MAC and addresses (port security)",
    ),
    Stage(
        "ls_in_arp_rsp",
        (*_L2, "arp_op", "arp_tpa", "ip_proto", "icmpv6_type", "ipv6_src", "nd_target", "nd_sll"),
        ("ls_in_nd_na", "ls_in_l2_lkup"),
        "answer ARP and IPv6 neighbour solicitations for addresses the model knows",
    ),
    Stage(
        "ls_in_nd_na",
        ("metadata", "eth_type", "ip_proto", "icmpv6_type", "nd_target"),
        (),
        "finish the advertisement the responder made: the target's link-layer address",
    ),
    Stage(
        "ls_in_l2_lkup",
        (*_L2, "ip_proto", "icmpv6_type", "ipv6_dst"),
        ("ls_out_port_sec", "phy_out"),
        "destination MAC -> logical output port (reg7); broadcast to the network's ports "
        "(here, and one copy to each other chassis with ports in the network)",
    ),
    Stage(
        "ls_out_port_sec",
        (*_L2, REG_OUTPORT),
        ("phy_out",),
        "a port receives only its MAC, broadcast and multicast (no promiscuous mode)",
    ),
    Stage(
        "phy_out",
        ("metadata", REG_OUTPORT, REG_FLAGS),
        (),
        "logical output port -> OpenFlow port here, or a tunnel to the port's chassis",
    ),
)

_BY_NAME = {s.name: (i, s) for i, s in enumerate(PIPELINE)}
_ALLOWED = {s.name: frozenset(lookup(f).index for f in s.fields) for s in PIPELINE}


class StageError(ValueError):
    pass


def table(stage: str) -> int:
    """The OpenFlow table of a stage."""
    try:
        return _BY_NAME[stage][0]
    except KeyError:
        raise StageError(f"no stage {stage!r}") from None


def stage_of(table_id: int) -> str:
    return PIPELINE[table_id].name if 0 <= table_id < len(PIPELINE) else f"table {table_id}"


def check(flow: Flow) -> None:
    """StageError if `flow` matches an undeclared field or goes where its stage may not."""
    st = PIPELINE[flow.table] if 0 <= flow.table < len(PIPELINE) else None
    if st is None:
        raise StageError(f"table {flow.table} is no stage")
    allowed = _ALLOWED[st.name]
    for slot, _, _ in flow.match.items:
        if slot not in allowed:
            raise StageError(f"{st.name}: matches undeclared field (slot {slot}) in {flow.origin}")
    targets = [flow.instructions.goto] if flow.instructions.goto is not None else []
    targets += [a.table for a in flow.instructions.apply if isinstance(a, Resubmit) and a.table]
    ok = {table(n) for n in st.next}
    for t in targets:
        if t not in ok:
            raise StageError(f"{st.name}: may not go to {stage_of(t)} ({flow.origin})")
