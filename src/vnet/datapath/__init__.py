"""The vnet switch at run time: ports, the per-packet path, learning, meters."""

from .port import Port, PortConfig, PortConfigError, PortStats, VlanMode, parse_port_spec
from .switch import FailMode, PacketIn, Switch, SwitchError

__all__ = [
    "FailMode",
    "PacketIn",
    "Port",
    "PortConfig",
    "PortConfigError",
    "PortStats",
    "Switch",
    "SwitchError",
    "VlanMode",
    "parse_port_spec",
]
