"""Address conversions.

Inside vnet every address is an `int` (MAC: 48 bits, IPv4: 32, IPv6: 128), the
form that masks apply to with a single `&`.  Text forms exist only at the edges
(flow syntax, JSON, the CLI), and are produced here.
"""

from __future__ import annotations

import ipaddress

__all__ = [
    "ip4_int",
    "ip4_str",
    "ip6_int",
    "ip6_str",
    "mac_bytes",
    "mac_int",
    "mac_str",
]


def mac_int(text: str) -> int:
    """`aa:bb:cc:dd:ee:ff` (or `-` separated) -> int; ValueError names the text."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"invalid MAC address {text!r}")
    try:
        return int("".join(p.zfill(2) for p in parts), 16)
    except ValueError:
        raise ValueError(f"invalid MAC address {text!r}") from None


def mac_str(value: int) -> str:
    h = f"{value:012x}"
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


def mac_bytes(value: int) -> bytes:
    return value.to_bytes(6, "big")


def ip4_int(text: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(f"invalid IPv4 address {text!r}") from None


def ip4_str(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def ip6_int(text: str) -> int:
    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(f"invalid IPv6 address {text!r}") from None


def ip6_str(value: int) -> str:
    return str(ipaddress.IPv6Address(value))
