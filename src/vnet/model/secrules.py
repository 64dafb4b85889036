"""The parts security groups and policies are made of: selectors, remotes, rules.

A rule says which traffic it matches, as seen from the port it guards:
`direction` (ingress: to the port, egress: from it), `ethertype` (IPv4 or
IPv6; absent: both), `protocol` (tcp, udp, icmp, icmpv6, any, or an IP
protocol number), `ports` (one port or one range, TCP and UDP only),
`icmp_type`/`icmp_code` (ICMP and ICMPv6 only) and the other end: `from`
for an ingress rule, `to` for an egress one, each one of `{cidr}`,
`{group}` (a security group of the same tenant) or `{selector}` (labels of
ports of the same tenant); no remote is anywhere.  Policy rules add an
`action` and `log`.

Everything a rule can check alone is checked here, naming the field: a
range reversed or outside 1-65535, ports on a protocol without ports, ICMP
fields on another protocol, a code without a type, a remote CIDR of the
other family, a remote on the wrong side of the direction.  Protocol
numbers with a name (6, 17, 1, 58) are stored as the name, so `6` and
`tcp` are one rule and a port range on `6` is accepted as on `tcp`.

The families a rule applies to (`ethertypes`) follow from what it says: its
`ethertype`, else its protocol (icmp is IPv4's, icmpv6 IPv6's), else its
remote CIDR, else both.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "ETHERTYPES",
    "LABEL_KEY",
    "PROTOCOLS",
    "GroupRule",
    "Peer",
    "PolicyRule",
    "Selector",
    "label_keys",
    "selects",
]

LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]{0,62})$")
ETHERTYPES = ("IPv4", "IPv6")
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
_NAMED = {n: p for p, n in PROTOCOLS.items()}
_PORTS = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def label_keys(v: dict[str, str]) -> dict[str, str]:
    """Labels (or a selector) with every key checked, in key order."""
    for k in v:
        if not LABEL_KEY.match(k):
            raise ValueError(f"label key {k!r}: letters, digits, '_', '.', '/', '-'")
    return dict(sorted(v.items()))


# labels as a selector names them: the same keys and values as an object's `labels`
Selector = Annotated[dict[str, Annotated[str, Field(max_length=63)]], AfterValidator(label_keys)]


def selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """Whether `selector` picks an object with `labels` (None picks nothing, `{}` everything)."""
    if selector is None:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _protocol(v: Any) -> Any:
    what = "tcp, udp, icmp, icmpv6, any, or a protocol number 0-255"
    if isinstance(v, str) and not v.strip().isdigit():
        t = v.strip().lower()
        if t != "any" and t not in PROTOCOLS:
            raise ValueError(f"{v!r}: {what}")
        return t
    if isinstance(v, str):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255:
        raise ValueError(f"{v!r}: {what}")
    return _NAMED.get(v, v)


def _ports(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    m = _PORTS.fullmatch(v) if isinstance(v, str) else None
    if m is None:
        raise ValueError(f"{v!r}: one port or one range, as '80' or '8000-8080'")
    lo, hi = int(m[1]), int(m[2] or m[1])
    for x in (lo, hi):
        if not 1 <= x <= 65535:
            raise ValueError(f"{v!r}: port {x} is outside 1-65535")
    if lo > hi:
        raise ValueError(f"{v!r}: the range is reversed ({lo} > {hi})")
    return str(lo) if lo == hi else f"{lo}-{hi}"


Protocol = Annotated[
    Literal["any", "tcp", "udp", "icmp", "icmpv6"] | Annotated[int, Field(ge=0, le=255)],
    BeforeValidator(_protocol),
]


def _family(cidr: str) -> str:
    return "IPv4" if ipaddress.ip_network(cidr).version == 4 else "IPv6"


class Peer(BaseModel):
    """The other end of a rule: addresses (`cidr`), a security group, or ports by label."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cidr: str | None = None
    group: str | None = None  # a security group of the same tenant: a name, its id once admitted
    selector: Selector | None = None

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            return str(ipaddress.ip_network(v.strip(), strict=True))
        except ValueError as e:
            raise ValueError(
                f"{v!r} is not an address or a network in CIDR notation ({e})"
            ) from None

    @model_validator(mode="after")
    def _one(self) -> Peer:
        given = [k for k in ("cidr", "group", "selector") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give one of cidr, group or selector")
        return self

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the one kind of remote given."""
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def family(self) -> str | None:
        """IPv4 or IPv6 for a CIDR; None (both) for ports."""
        return _family(self.cidr) if self.cidr is not None else None


class GroupRule(BaseModel):
    """An allow rule of a security group."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] | None = None  # None: both
    protocol: Protocol = "any"
    ports: Annotated[str | None, BeforeValidator(_ports)] = None  # None: every port
    icmp_type: Annotated[int, Field(ge=0, le=255)] | None = None  # None: every type
    icmp_code: Annotated[int, Field(ge=0, le=255)] | None = None  # None: every code
    from_: Peer | None = Field(None, alias="from")  # an ingress rule's remote; None: anywhere
    to: Peer | None = None  # an egress rule's remote; None: anywhere

    @field_validator("protocol")
    @classmethod
    def _proto_family(cls, v: str | int, info: ValidationInfo) -> str | int:
        e = info.data.get("ethertype")
        if v == "icmp" and e == "IPv6":
            raise ValueError("icmp is IPv4's: an IPv6 rule says icmpv6")
        if v == "icmpv6" and e == "IPv4":
            raise ValueError("icmpv6 is IPv6's: an IPv4 rule says icmp")
        return v

    @field_validator("ports")
    @classmethod
    def _ports_need_tcp_udp(cls, v: str | None, info: ValidationInfo) -> str | None:
        proto = info.data.get("protocol")
        if v is not None and "protocol" in info.data and proto not in ("tcp", "udp"):
            raise ValueError(f"ports need protocol tcp or udp (protocol is {proto})")
        return v

    @field_validator("icmp_type")
    @classmethod
    def _type_needs_icmp(cls, v: int | None, info: ValidationInfo) -> int | None:
        proto = info.data.get("protocol")
        if v is not None and "protocol" in info.data and proto not in ("icmp", "icmpv6"):
            raise ValueError(f"an ICMP type needs protocol icmp or icmpv6 (protocol is {proto})")
        return v

    @field_validator("icmp_code")
    @classmethod
    def _code_needs_type(cls, v: int | None, info: ValidationInfo) -> int | None:
        proto = info.data.get("protocol")
        if v is not None and "protocol" in info.data and proto not in ("icmp", "icmpv6"):
            raise ValueError(f"an ICMP code needs protocol icmp or icmpv6 (protocol is {proto})")
        if v is not None and "icmp_type" in info.data and info.data["icmp_type"] is None:
            raise ValueError("an ICMP code needs its icmp_type")
        return v

    @field_validator("from_", "to")
    @classmethod
    def _remote(cls, v: Peer | None, info: ValidationInfo) -> Peer | None:
        if v is None:
            return None
        direction = info.data.get("direction")
        if info.field_name == "from_" and direction == "egress":
            raise ValueError("an egress rule names its remote in `to`")
        if info.field_name == "to" and direction == "ingress":
            raise ValueError("an ingress rule names its remote in `from`")
        fam = v.family
        implied = info.data.get("ethertype") or {"icmp": "IPv4", "icmpv6": "IPv6"}.get(
            str(info.data.get("protocol"))
        )
        if fam is not None and implied is not None and fam != implied:
            why = "ethertype" if info.data.get("ethertype") else f"protocol {info.data['protocol']}"
            raise ValueError(f"{v.cidr} is an {fam} CIDR; the rule is {implied} ({why})")
        return v

    # -- what the rule means ---------------------------------------------------------------
    @property
    def remote(self) -> Peer | None:
        """The other end: `from` of an ingress rule, `to` of an egress one."""
        return self.from_ if self.direction == "ingress" else self.to

    @property
    def ethertypes(self) -> tuple[str, ...]:
        """The families the rule applies to."""
        if self.ethertype is not None:
            return (self.ethertype,)
        if self.protocol in ("icmp", "icmpv6"):
            return ("IPv4",) if self.protocol == "icmp" else ("IPv6",)
        fam = self.remote.family if self.remote is not None else None
        return (fam,) if fam is not None else ETHERTYPES

    @property
    def protocol_number(self) -> int | None:
        """The IP protocol number; None for any."""
        p = self.protocol
        return None if p == "any" else PROTOCOLS[p] if isinstance(p, str) else p

    @property
    def port_range(self) -> tuple[int, int] | None:
        """(first, last) destination port; None for every port."""
        if self.ports is None:
            return None
        lo, _, hi = self.ports.partition("-")
        return int(lo), int(hi or lo)


class PolicyRule(GroupRule):
    """A rule of a policy: what it matches, and what it decides."""

    action: Literal["allow", "deny", "reject", "pass"]
    log: bool = False
