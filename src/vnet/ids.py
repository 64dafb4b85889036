"""Identifiers shared by the switch and the controller.

A vnet switch's datapath id is derived from its name, so it is stable
across restarts and a controller can tell which chassis a switch that dials
in belongs to before it has said anything else.
"""

from __future__ import annotations

import zlib

__all__ = ["datapath_id"]

_VNET_OUI = 0x564E << 32  # "VN" in the high bits, as OVS puts a MAC there


def datapath_id(name: str) -> int:
    return zlib.crc32(name.encode()) | _VNET_OUI
