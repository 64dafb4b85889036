"""Flow entries, their instructions, and the runtime state kept beside them.

`Flow` is the configuration: immutable, comparable by value, what a controller
sends and what the reconciler diffs.  `Rule` is a flow installed in a table:
it adds the runtime state (counters, install and last-use times) and is what
the classifier stores.  Configuration and state stay apart (the Faucet `dyn_*`
wart), so `Flow` equality never depends on traffic.

Instructions follow OpenFlow 1.3 §5.9, executed in this order: meter,
apply-actions, clear-actions, write-actions, write-metadata, goto-table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from .actions import Action
from .match import Match

__all__ = ["DEFAULT_PRIORITY", "Flow", "FlowMod", "FlowModCommand", "Instructions", "Rule"]

DEFAULT_PRIORITY = 0x8000
OFPFF_SEND_FLOW_REM = 1 << 0
OFPFF_CHECK_OVERLAP = 1 << 1


@dataclass(frozen=True, slots=True)
class Instructions:
    apply: tuple[Action, ...] = ()
    meter: int | None = None
    clear: bool = False
    write: tuple[Action, ...] = ()
    metadata: tuple[int, int] | None = None  # (value, mask)
    goto: int | None = None

    @property
    def is_drop(self) -> bool:
        return (
            not self.apply
            and self.meter is None
            and not self.clear
            and not self.write
            and self.metadata is None
            and self.goto is None
        )


@dataclass(frozen=True, slots=True)
class Flow:
    match: Match = field(default_factory=Match)
    instructions: Instructions = field(default_factory=Instructions)
    table: int = 0
    priority: int = DEFAULT_PRIORITY
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    # where the flow came from (file:line, model object, stage): shown by trace and
    # dump; not part of OpenFlow, so it never takes part in equality
    origin: str = field(default="", compare=False)

    def with_(self, **changes: object) -> Flow:
        return replace(self, **changes)  # type: ignore[arg-type]


class Rule:
    """An installed flow and its counters."""

    __slots__ = (
        "byte_count",
        "created",
        "flow",
        "instructions",
        "packet_count",
        "priority",
        "used",
    )

    def __init__(self, flow: Flow, now: float = 0.0) -> None:
        self.flow = flow
        self.priority = flow.priority
        self.instructions = flow.instructions
        self.packet_count = 0
        self.byte_count = 0
        self.created = now
        self.used = now

    def __repr__(self) -> str:
        return f"Rule(table={self.flow.table}, priority={self.priority}, {self.flow.match})"


class FlowModCommand(Enum):
    ADD = "add"
    MODIFY = "modify"
    MODIFY_STRICT = "modify_strict"
    DELETE = "delete"
    DELETE_STRICT = "delete_strict"


@dataclass(frozen=True, slots=True)
class FlowMod:
    """A change to a flow table, OpenFlow 1.3 semantics.

    For delete/modify, `flow.table` 0xff means all tables; `cookie_mask` selects by
    cookie; `out_port`/`out_group` (delete only) restrict to flows that output there.
    """

    command: FlowModCommand
    flow: Flow
    cookie_mask: int = 0
    out_port: int = 0xFFFFFFFF
    out_group: int = 0xFFFFFFFF
    reset_counts: bool = False
