"""Packet trace: the tree of what the pipeline did with one packet.

The tracer is a passive recorder attached to a translation: the engine calls
`table`, `action_begin`/`action_end`, `push`/`pop` and `note` as it runs the
real code, so the trace is the forwarding, not a model of it (Open vSwitch's
`ofproto/trace` works the same way).  Untraced translation pays one `is None`
test per table and per action list.

Output is a tree like `ovs-appctl ofproto/trace`: each table visited, the rule
that matched with its cookie and origin (for a conjunctive match the
`conj_id` flow, then the clauses that made the conjunction), each action with the fields it
changed (before -> after), nested resubmits and group buckets, then the final
flow and the datapath actions.  `as_dict` gives the same for machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..packet import flowkey as fk
from .actions import Action
from .classifier import ConjMatch
from .context import XContext
from .fields import BY_INDEX
from .flow import Rule
from .odp import format_odp
from .ofctl import format_instructions, format_key, format_match

__all__ = ["TraceNode", "Tracer"]


@dataclass
class TraceNode:
    kind: str  # table | conjunction | action | note | resubmit | group | bucket | action set
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    children: list[TraceNode] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text, **self.data}
        if self.children:
            out["children"] = [c.as_dict() for c in self.children]
        return out


def _changes(before: list[int], after: list[int]) -> list[dict[str, str]]:
    out = []
    for i in fk.MATCHABLE:
        if before[i] != after[i]:
            f = BY_INDEX.get(i)
            name = f.name if f else fk.FIELDS[i]
            b = f.format_value(before[i]) if f else str(before[i])
            a = f.format_value(after[i]) if f else str(after[i])
            out.append({"field": name, "before": b, "after": a})
    return out


class Tracer:
    def __init__(self, bridge: str = "vnet") -> None:
        self.bridge = bridge
        self.root = TraceNode("root", bridge)
        self._stack: list[TraceNode] = [self.root]
        self._pending: list[tuple[TraceNode, list[int], int]] = []
        self.initial: list[int] = []
        self.final: list[int] = []
        self.odp: tuple[Any, ...] = ()
        self.drop_reason: str | None = None
        # ct(table=N) passes that follow this one: (heading, their tracer)
        self.recirculations: list[tuple[str, Tracer]] = []

    # -- recording (called by the engine) ----------------------------------------------
    def _add(self, node: TraceNode) -> TraceNode:
        self._stack[-1].children.append(node)
        return node

    def table(
        self,
        table_id: int,
        rule: Rule | None,
        fields: list[int],
        conj: ConjMatch | None = None,
    ) -> None:
        if not self.initial:
            self.initial = list(fields)
        if rule is None:
            node = TraceNode(
                "table", f"{table_id:>2}. No match.", {"table": table_id, "matched": False}
            )
        else:
            fl = rule.flow
            m = format_match(fl.match) or "(catch-all)"
            text = f"{table_id:>2}. {m}, priority {fl.priority}, cookie {fl.cookie:#x}"
            node = TraceNode(
                "table",
                text,
                {
                    "table": table_id,
                    "matched": True,
                    "priority": fl.priority,
                    "cookie": f"{fl.cookie:#x}",
                    "match": format_match(fl.match),
                    "actions": format_instructions(fl.instructions),
                    "origin": fl.origin,
                },
            )
        self._add(node)
        self._stack.append(node)
        if rule is not None and rule.flow.origin:
            self.note(f"from {rule.flow.origin}")
        if conj is not None:
            self._conjunction(node, conj)

    def _conjunction(self, node: TraceNode, conj: ConjMatch) -> None:
        """Which clauses made the conjunction whose flow matched."""
        clauses = [
            {
                "clause": f"{k}/{n}",
                "match": format_match(r.flow.match),
                "priority": r.priority,
                "cookie": f"{r.flow.cookie:#x}",
                "origin": r.flow.origin,
            }
            for r, k, n in conj.clauses
        ]
        node.data["conjunction"] = {
            "id": conj.conj_id,
            "priority": conj.priority,
            "clauses": clauses,
        }
        head = TraceNode(
            "conjunction",
            f"conjunction({conj.conj_id}) matched, clauses at priority {conj.priority}:",
        )
        for c in clauses:
            head.children.append(
                TraceNode("note", f"clause {c['clause']}: {c['match'] or '(catch-all)'}")
            )
        self._add(head)

    def end_table(self) -> None:
        self._stack.pop()

    def push(self, kind: str, text: str) -> None:
        self._stack.append(self._add(TraceNode(kind, text)))

    def pop(self) -> None:
        self._stack.pop()

    def note(self, text: str) -> None:
        self._add(TraceNode("note", text))

    def action_begin(self, action: Action, x: XContext) -> None:
        node = self._add(TraceNode("action", action.format(), {"action": action.format()}))
        self._pending.append((node, list(x.fields), len(x.odp)))
        self._stack.append(node)

    def action_end(self, x: XContext) -> None:
        node, before, n_odp = self._pending.pop()
        self._stack.pop()
        changes = _changes(before, x.fields)
        node.data["changes"] = changes
        emitted = x.odp[n_odp:]
        if emitted:
            node.data["datapath"] = format_odp(emitted)

    def finish(self, x: XContext) -> None:
        if not self.initial:
            self.initial = list(x.fields)
        self.final = list(x.fields)
        self.odp = tuple(x.odp)
        self.drop_reason = x.drop_reason

    # -- output ----------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "flow": format_key(self.initial),
            "bridge": self.bridge,
            "tables": [c.as_dict() for c in self.root.children],
            "final_flow": format_key(self.final),
            "datapath_actions": format_odp(self.odp),
            "drop_reason": self.drop_reason if not self.odp else None,
            "recirculations": [{"heading": h, **sub.as_dict()} for h, sub in self.recirculations],
        }

    def format(self) -> str:
        lines = [
            f"Flow: {format_key(self.initial)}",
            "",
            f'bridge("{self.bridge}")',
            "-" * (len(self.bridge) + 10),
        ]
        for c in self.root.children:
            self._fmt(c, 0, lines)
        lines.append("")
        final = format_key(self.final)
        lines.append("Final flow: " + ("unchanged" if final == format_key(self.initial) else final))
        dp = format_odp(self.odp)
        if not self.odp and self.drop_reason:
            dp += f" (reason: {self.drop_reason})"
        lines.append(f"Datapath actions: {dp}")
        for heading, sub in self.recirculations:
            bar = "=" * len(heading)
            lines += ["", bar, heading, bar, sub.format()]
        return "\n".join(lines)

    def _fmt(self, node: TraceNode, depth: int, lines: list[str]) -> None:
        pad = "    " * depth
        if node.kind == "table":
            lines.append(f" {pad}{node.text}")
            for c in node.children:
                self._fmt(c, depth + 1, lines)
            return
        lines.append(f" {pad}{node.text}")
        if node.kind == "action" and not node.children:
            for ch in node.data.get("changes", []):
                lines.append(f" {pad}    {ch['field']}: {ch['before']} -> {ch['after']}")
        for c in node.children:
            self._fmt(c, depth + 1, lines)
