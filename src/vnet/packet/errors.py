"""Typed decode errors.

A parser never lets an `IndexError` or `struct.error` escape: anything wrong with
the bytes becomes a `DecodeError` carrying a short, stable reason code.  The
switch counts drops by these codes, so they are part of the interface: add new
ones, never rename.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DecodeError", "Reason"]


class Reason(IntEnum):
    """Why parsing stopped early.  0 means the frame parsed completely."""

    OK = 0
    TRUNCATED_ETH = 1
    TRUNCATED_VLAN = 2
    TRUNCATED_ARP = 3
    BAD_ARP = 4
    TRUNCATED_IPV4 = 5
    BAD_IPV4_VERSION = 6
    BAD_IPV4_IHL = 7
    BAD_IPV4_LENGTH = 8
    TRUNCATED_IPV6 = 9
    BAD_IPV6_VERSION = 10
    BAD_IPV6_LENGTH = 11
    TRUNCATED_IPV6_EXT = 12
    TRUNCATED_TCP = 13
    BAD_TCP_OFFSET = 14
    TRUNCATED_UDP = 15
    BAD_UDP_LENGTH = 16
    TRUNCATED_ICMP = 17
    TRUNCATED_ICMPV6 = 18
    BAD_ND_OPTION = 19
    TRUNCATED_VXLAN = 20
    TRUNCATED_GENEVE = 21
    BAD_GENEVE_OPTION = 22
    TRUNCATED_GRE = 23
    BAD_GRE_VERSION = 24
    TOO_MANY_VLANS = 25
    TOO_MANY_IPV6_EXT = 26
    BAD_CHECKSUM = 27
    BAD_VXLAN = 28
    BAD_GENEVE = 29
    GENEVE_UNKNOWN_CRITICAL = 30
    BAD_GRE = 31

    @property
    def label(self) -> str:
        return self.name.lower()


class DecodeError(ValueError):
    """Raised by the per-protocol parsers; `reason` says which check failed."""

    def __init__(self, reason: Reason, detail: str = "", offset: int = 0) -> None:
        self.reason = reason
        self.detail = detail
        self.offset = offset
        msg = reason.label + (f": {detail}" if detail else "") + f" (at byte {offset})"
        super().__init__(msg)
