"""What a lab adds to a model file before the controller sees it: the underlay.

A lab's chassis are joined by an underlay network of its own (`underlay:`,
a CIDR, default 192.168.100.0/24; it exists only inside the lab's
namespaces).  A chassis that names no `underlay` address gets the next free
one, so a file may list chassis by name alone.  The `underlay` key is the
lab's, not the model's: it is removed here.  Pure: a document in, a
document out; `LabError` names what is wrong.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["DEFAULT_UNDERLAY", "TopologyError", "with_underlay"]

DEFAULT_UNDERLAY = "192.168.100.0/24"


class TopologyError(ValueError):
    pass


def with_underlay(doc: dict[str, Any]) -> tuple[dict[str, Any], ipaddress.IPv4Network]:
    """The file with every chassis' underlay address filled in, and the underlay network."""
    doc = dict(doc)
    text = doc.pop("underlay", None) or DEFAULT_UNDERLAY
    try:
        net = ipaddress.ip_network(str(text), strict=True)
    except ValueError as e:
        raise TopologyError(f"underlay: {text!r} is not a network in CIDR notation ({e})") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 30:
        raise TopologyError(f"underlay: {text}: an IPv4 network of at least 4 addresses")
    chassis = [dict(c) if isinstance(c, dict) else c for c in doc.get("chassis") or []]
    taken = set()
    for i, ch in enumerate(chassis):
        if isinstance(ch, dict) and ch.get("underlay") is not None:
            try:
                a = ipaddress.ip_address(str(ch["underlay"]))
            except ValueError:
                raise TopologyError(
                    f"chassis[{i}].underlay: {ch['underlay']!r} is not an IPv4 address"
                ) from None
            if a not in net or a in (net.network_address, net.broadcast_address):
                raise TopologyError(f"chassis[{i}].underlay: {a} is not a host of {net}")
            taken.add(a)
    free = (a for a in net.hosts() if a not in taken)
    for ch in chassis:
        if isinstance(ch, dict) and ch.get("underlay") is None:
            nxt = next(free, None)
            if nxt is None:
                raise TopologyError(f"underlay: {net} has no address left for {ch.get('name')}")
            ch["underlay"] = str(nxt)
    if chassis:
        doc["chassis"] = chassis
    return doc, net
