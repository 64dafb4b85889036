"""Pipeline errors, typed so the OpenFlow agent can answer with the right ERROR.

`kind` names the OpenFlow error (type, code) it corresponds to; the message
names the offending field, action or id.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ErrorKind", "PipelineError"]


class ErrorKind(Enum):
    BAD_TABLE_ID = ("bad_instruction", "bad_table_id")
    BAD_GOTO = ("bad_instruction", "bad_table_id")
    BAD_OUT_GROUP = ("bad_action", "bad_out_group")
    OVERLAP = ("flow_mod_failed", "overlap")
    TABLE_FULL = ("flow_mod_failed", "table_full")
    GROUP_EXISTS = ("group_mod_failed", "group_exists")
    UNKNOWN_GROUP = ("group_mod_failed", "unknown_group")
    INVALID_GROUP = ("group_mod_failed", "invalid_group")
    BAD_BUCKET = ("group_mod_failed", "bad_bucket")
    CHAINING_UNSUPPORTED = ("group_mod_failed", "chaining_unsupported")
    LOOP = ("group_mod_failed", "loop")
    UNSUPPORTED_ACTION = ("bad_action", "bad_type")
    BAD_ARGUMENT = ("bad_action", "bad_argument")


class PipelineError(ValueError):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        self.kind = kind
        super().__init__(message)
