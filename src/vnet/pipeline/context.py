"""The translation context: what one packet's walk through the pipeline carries.

Actions read and write `fields` (a mutable copy of the flow key) and append
datapath operations to `odp`; they never touch bytes.  The datapath applies
`odp` to the frame afterwards (`pipeline.odp.apply`), and the trace reads the
very same context, so a traced packet and a forwarded one cannot differ.
One thing besides the key is read: the frame's length (`pkt_len`, for
`check_pkt_larger`), and each comparison made with it is kept in `lengths`
so a decision cached for one frame is used only for frames on the same side.

Datapath operations are plain tuples, cheap to build and hashable for the
decision cache:

    ("output", port)                 ("set", slot, value)
    ("push_vlan", tpid, tci)         ("pop_vlan",)
    ("controller", reason, max_len, table_id, cookie)
    ("normal",)                      ("meter", meter_id)
    ("clone", (ops...))              ("ct", Ct-action)
    ("learn", vlan, mac, port)       (switch state, not the frame: MAC learning)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..packet.flowkey import CVLAN_VID, PACKET_FIELDS, TUNNEL_FIELDS, VLAN_VID

if TYPE_CHECKING:
    from .trace import Tracer

__all__ = ["Engine", "Hooks", "NullHooks", "XContext", "packet_len"]

Op = tuple[Any, ...]
_EMITTED = PACKET_FIELDS | TUNNEL_FIELDS  # writes the datapath must see


def packet_len(frame_len: int, key: Sequence[int]) -> int:
    """The length `check_pkt_larger` compares: the frame's, Ethernet header included,
    its VLAN tags (4 bytes each) not (ovs-actions(7))."""
    tags = bool(key[VLAN_VID] & 0x1000) + bool(key[CVLAN_VID] & 0x1000)
    return frame_len - 4 * tags


class Hooks(Protocol):
    """What the pipeline asks of the switch it runs in."""

    def normal(self, x: XContext) -> None: ...

    def flood_ports(self, in_port: int, include_no_flood: bool) -> Sequence[int]: ...

    def port_live(self, port: int) -> bool: ...


class NullHooks:
    """No switch around: `normal` is left to the caller, no ports to flood, all live."""

    def __init__(self, ports: Sequence[int] = ()) -> None:
        self.ports = list(ports)

    def normal(self, x: XContext) -> None:
        x.emit(("normal",))

    def flood_ports(self, in_port: int, include_no_flood: bool) -> Sequence[int]:
        return [p for p in self.ports if p != in_port]

    def port_live(self, port: int) -> bool:
        return True


class Engine(Protocol):
    """Pipeline operations that actions recurse into."""

    def resubmit(self, x: XContext, port: int | None, table: int | None) -> None: ...

    def run_group(self, x: XContext, group_id: int) -> None: ...


class XContext:
    __slots__ = (
        "action_set",
        "cacheable",
        "cookie",
        "depth",
        "drop_reason",
        "engine",
        "fields",
        "groups",
        "halted",
        "hooks",
        "lengths",
        "odp",
        "pkt_len",
        "resubmits",
        "rules",
        "table_id",
        "tables",
        "tracer",
    )

    def __init__(
        self,
        key: Sequence[int],
        engine: Engine,
        hooks: Hooks,
        tracer: Tracer | None = None,
        pkt_len: int | None = None,
    ) -> None:
        self.fields: list[int] = list(key)
        self.pkt_len = pkt_len  # `packet_len` of the frame, when there is one
        self.lengths: list[tuple[int, bool]] = []  # check_pkt_larger: (length, larger)
        self.odp: list[Op] = []
        self.action_set: dict[Any, Any] = {}
        self.engine = engine
        self.hooks = hooks
        self.tracer = tracer
        self.depth = 0
        self.resubmits = 0
        self.rules: list[Any] = []  # pipeline.flow.Rule, in the order they matched
        self.tables: list[tuple[int, bool]] = []  # (table id, matched)
        self.groups: list[int] = []  # groups executed, for their counters
        self.table_id = 0
        self.cookie = 0
        self.cacheable = True
        self.halted = False
        self.drop_reason: str | None = None

    def emit(self, op: Op) -> None:
        self.odp.append(op)

    def set_field(self, slot: int, value: int) -> None:
        if self.fields[slot] == value:
            return
        self.fields[slot] = value
        if slot in _EMITTED:
            self.odp.append(("set", slot, value))

    def note(self, text: str) -> None:
        if self.tracer is not None:
            self.tracer.note(text)

    def halt(self, reason: str) -> None:
        self.halted = True
        self.drop_reason = reason
        self.note(f"stop: {reason}")
