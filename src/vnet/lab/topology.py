"""What a lab adds to a model file before the controller sees it: the underlay
and the physical network's edge.

A lab's chassis are joined by an underlay network of its own (`underlay:`,
a CIDR, default 192.168.100.0/24; it exists only inside the lab's
namespaces).  A chassis that names no `underlay` address gets the next free
one, so a file may list chassis by name alone.  The `underlay` key is the
lab's, not the model's: it is removed here.

External networks are on physical networks (`physnet`): every chassis that
names no `physnets` gets each physnet of the file's external networks mapped
to an uplink `up-<physnet>` (`with_physnets`), which the lab cables to its
physical switch; `physnets: {}` says a chassis has none (a compute-only
host: its floating IPs are translated on the gateway, not distributed).  The `outside` key (the lab's too, removed here) says where
the upstream router's server is: `server: [203.0.113.10/24,
2001:db8:ffff::10/64]` by default (`DEFAULT_SERVER`); the upstream router
itself holds each external subnet's gateway address.  Pure: a document in,
a document out; `TopologyError` names what is wrong.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_UNDERLAY",
    "Outside",
    "TopologyError",
    "model_part",
    "physnets_of",
    "uplink_name",
    "with_outside",
    "with_physnets",
    "with_underlay",
]

DEFAULT_UNDERLAY = "192.168.100.0/24"
DEFAULT_SERVER = ("203.0.113.10/24", "2001:db8:ffff::10/64")
_IFNAME_MAX = 15


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


def uplink_name(physnet: str) -> str:
    """The uplink a lab's chassis has for `physnet` unless the file says otherwise."""
    return f"up-{physnet}"


def physnets_of(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Physnet -> the file's external networks on it."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i, n in enumerate(doc.get("networks") or []):
        if not isinstance(n, dict) or not n.get("external"):
            continue
        p = n.get("physnet")
        if not isinstance(p, str) or not p:
            raise TopologyError(f"networks[{i}].physnet: an external network names its physnet")
        out.setdefault(p, []).append(n)
    return out


def with_physnets(doc: dict[str, Any]) -> dict[str, Any]:
    """The file with each chassis that names no `physnets` given an uplink per physnet
    of its external networks; refused: an uplink name longer than an interface's."""
    nets = physnets_of(doc)
    if not nets:
        return doc
    doc = dict(doc)
    for p in nets:
        if len(uplink_name(p)) > _IFNAME_MAX:
            raise TopologyError(
                f"physnet: {p!r}: its uplink {uplink_name(p)!r} is longer than "
                f"{_IFNAME_MAX} characters (name the chassis' physnets)"
            )
    chassis = [dict(c) if isinstance(c, dict) else c for c in doc.get("chassis") or []]
    for ch in chassis:
        if isinstance(ch, dict) and ch.get("physnets") is None:
            ch["physnets"] = {p: uplink_name(p) for p in sorted(nets)}
    if chassis:
        doc["chassis"] = chassis
    return doc


@dataclass(frozen=True)
class Outside:
    """The upstream router's side of the lab: its server's addresses (CIDRs)."""

    server: tuple[str, ...] = DEFAULT_SERVER


def with_outside(doc: dict[str, Any]) -> tuple[dict[str, Any], Outside]:
    """The file without the lab's `outside` key, and what it says."""
    doc = dict(doc)
    raw = doc.pop("outside", None)
    if raw is None:
        return doc, Outside()
    if not isinstance(raw, dict) or set(raw) - {"server"}:
        extra = sorted(set(raw) - {"server"}) if isinstance(raw, dict) else []
        raise TopologyError(
            f"outside: a mapping with `server` only{f' (not {extra})' if extra else ''}"
        )
    server = raw.get("server", list(DEFAULT_SERVER))
    if isinstance(server, str):
        server = [server]
    if not isinstance(server, list) or not server:
        raise TopologyError("outside.server: a list of addresses in CIDR notation")
    seen = set()
    for i, a in enumerate(server):
        try:
            itf = ipaddress.ip_interface(str(a))
        except ValueError:
            raise TopologyError(
                f"outside.server[{i}]: {a!r} is not an address in CIDR notation"
            ) from None
        if itf.version in seen:
            raise TopologyError(f"outside.server[{i}]: a second IPv{itf.version} address")
        seen.add(itf.version)
    return doc, Outside(tuple(str(a) for a in server))


def model_part(doc: dict[str, Any]) -> dict[str, Any]:
    """What of a lab file is the model's, as the lab applies it: each chassis' uplinks
    filled in, and the lab's own keys (`outside`, `addressing`) taken out."""
    return with_outside(with_physnets({k: v for k, v in doc.items() if k != "addressing"}))[0]
