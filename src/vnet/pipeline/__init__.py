"""The OpenFlow-style match/action engine, pure: fields, matches, actions,
classifier, tables, decision cache, text syntax and trace.  No I/O."""

from .actions import Action, ActionError, parse_action
from .context import Hooks, NullHooks, XContext
from .engine import Decision, Pipeline, TableMiss
from .errors import ErrorKind, PipelineError
from .fields import FieldError, lookup
from .flow import Flow, FlowMod, FlowModCommand, Instructions, Rule
from .groups import Bucket, GroupDesc, GroupMod, GroupModCommand, GroupType
from .match import Match, PrereqError
from .odp import apply, format_odp
from .ofctl import FlowSyntaxError, format_dump, format_flow, parse_flow, parse_flows, parse_packet
from .trace import Tracer

__all__ = [
    "Action",
    "ActionError",
    "Bucket",
    "Decision",
    "ErrorKind",
    "FieldError",
    "Flow",
    "FlowMod",
    "FlowModCommand",
    "FlowSyntaxError",
    "GroupDesc",
    "GroupMod",
    "GroupModCommand",
    "GroupType",
    "Hooks",
    "Instructions",
    "Match",
    "NullHooks",
    "Pipeline",
    "PipelineError",
    "PrereqError",
    "Rule",
    "TableMiss",
    "Tracer",
    "XContext",
    "apply",
    "format_dump",
    "format_flow",
    "format_odp",
    "lookup",
    "parse_action",
    "parse_flow",
    "parse_flows",
    "parse_packet",
]
