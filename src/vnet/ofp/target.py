"""OpenFlow connection targets, in Open vSwitch's syntax."""

from __future__ import annotations

__all__ = ["parse_target"]


def parse_target(target: str) -> tuple[str, str, int]:
    """`tcp:HOST:PORT`, `ptcp:PORT[:IP]`, `unix:PATH`, `punix:PATH` -> (kind, host/path, port)."""
    kind, _, rest = target.partition(":")
    if kind in ("unix", "punix"):
        if not rest:
            raise ValueError(f"{target!r}: missing socket path")
        return kind, rest, 0
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{target!r}: expected tcp:HOST:PORT")
        return kind, host, int(port)
    if kind == "ptcp":
        port, _, host = rest.partition(":")
        if not port.isdigit():
            raise ValueError(f"{target!r}: expected ptcp:PORT[:IP]")
        return kind, host or "0.0.0.0", int(port)
    raise ValueError(f"{target!r}: expected tcp:, ptcp:, unix: or punix:")
