"""The declarative model: typed, validated objects users declare.

Each kind (tenant, network, subnet, port, chassis, security group, policy,
router, floating IP) is a frozen pydantic model that checks what one object
can check alone:
formats (names, MACs, CIDRs, addresses, label selectors), ranges (a VNI fits
24 bits, a port range lies in 1-65535) and consistency inside the object (a
subnet's gateway inside its CIDR, a rule's ports only on TCP or UDP, a
remote CIDR of the rule's family).  What needs the other objects -- a port's
address inside its network's subnets, a MAC unique in a network, a free VNI --
is checked in `rules`, against a snapshot of the whole model.

Security groups and policies select ports by label (`selector`: every
key/value must be among the port's labels; `{}` selects every port of the
tenant).  Selectors are exact matches only -- no set-based expressions such
as Kubernetes' `matchExpressions` -- so a selector is one label set, a
membership test is a subset test, and the enforcement can give each distinct
label set one identity.  "Any of" is written as several rules or groups.

Objects refer to each other by id.  Runtime state (flow counters) never
lives here: the model is what users asked for -- and, as desired state every
chassis compiles alike, what the controller learned of the world outside the
model: a router's neighbours (`Neighbour`, OVN's MAC_Binding) and what
chassis' BFD sessions say of each other (`BFDStatus`); and, where agents
program the chassis, what each agent says of its own (`ChassisStatus`: its
switch session, the ports it made up -- OVN's Port_Binding.up), since the
controller serving the API holds no session to learn it from.  These are
kinds of `SYSTEM_KINDS` that users read and never write.
`revision` is the store's global revision at the object's last change; it is
what optimistic concurrency compares.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..packet.encap import overhead
from .secrules import (
    ETHERTYPES,
    PROTOCOLS,
    GroupRule,
    Peer,
    PolicyRule,
    Selector,
    label_keys,
    selects,
)

__all__ = [
    "ENCAPS",
    "ETHERTYPES",
    "GENEVE_OPTION",
    "KINDS",
    "PROTOCOLS",
    "SYSTEM_KINDS",
    "AddressPair",
    "BFDStatus",
    "BGPPeer",
    "BGPUplink",
    "Chassis",
    "ChassisBGP",
    "ChassisStatus",
    "FixedIP",
    "FloatingIP",
    "Gateway",
    "GroupRule",
    "Neighbour",
    "Network",
    "Peer",
    "Policy",
    "PolicyRule",
    "Pool",
    "Port",
    "PortForwarding",
    "Resource",
    "Route",
    "Router",
    "RouterInterface",
    "SecurityGroup",
    "Subnet",
    "Tenant",
    "normalize_mac",
    "selects",
    "tunnel_iface",
]

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
IFNAME_RE = r"^[A-Za-z0-9_.-]{1,15}$"  # a Linux interface name
MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
MAX_VNI = (1 << 24) - 1
MAX_PORT_KEY = (1 << 15) - 1  # Geneve's option room, as OVN
MAX_ROUTER_KEY = (1 << 24) - 1


def new_id() -> str:
    return str(uuid.uuid4())


def iface_name(port_id: str) -> str:
    """A port's interface on its chassis: `vp` and its id, within Linux's 15 characters."""
    return "vp" + port_id.replace("-", "")[:11]


ENCAPS = ("vxlan", "geneve", "nvgre")
# bytes vnet's Geneve option adds (OVN's: class 0x0102 type 0x80, the logical ports)
GENEVE_OPTION = 8


def tunnel_iface(kind: str) -> str:
    """The flow-based tunnel port of one encapsulation on every chassis' switch."""
    return f"vtep-{kind}"


def normalize_mac(text: str) -> str:
    t = text.strip().lower()
    if not MAC_RE.match(t):
        raise ValueError(f"{text!r} is not a MAC address (xx:xx:xx:xx:xx:xx)")
    t = t.replace("-", ":")
    if int(t[:2], 16) & 1:
        raise ValueError(f"{text} is a multicast address, not a port's MAC")
    if t == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a port's MAC")
    return t


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None


class Resource(BaseModel):
    """Fields every object has."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    kind: ClassVar[str] = ""
    plural: ClassVar[str] = ""

    id: Annotated[str, Field(pattern=ID_RE)] = Field(default_factory=new_id)
    name: Annotated[str, Field(pattern=NAME_RE)]
    description: Annotated[str, Field(max_length=255)] = ""
    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict)
    revision: int = 0

    _labels = field_validator("labels")(lambda cls, v: label_keys(v))

    def spec(self) -> dict[str, Any]:
        """What a user declares: everything but the store's revision."""
        return self.model_dump(mode="json", exclude={"revision"})

    def changed(self, **fields: Any) -> Resource:
        return type(self).model_validate({**self.model_dump(mode="json"), **fields})


class Tenant(Resource):
    kind: ClassVar[str] = "tenant"
    plural: ClassVar[str] = "tenants"


class Network(Resource):
    """A logical switch: one broadcast domain, one segment id (VNI)."""

    kind: ClassVar[str] = "network"
    plural: ClassVar[str] = "networks"
    tenant: str
    segment_id: Annotated[int, Field(ge=1, le=MAX_VNI)] | None = None
    # None: what every chassis' underlay carries after its encapsulation (filled in on admission)
    mtu: Annotated[int, Field(ge=576, le=9000)] | None = None
    admin_up: bool = True
    # a segment of the physical network (a provider network, OVN's localnet): reached on
    # each chassis that maps `physnet` to an uplink (`Chassis.physnets`), flat or on `vlan`
    external: bool = False
    physnet: Annotated[str, Field(pattern=NAME_RE)] | None = None
    vlan: Annotated[int, Field(ge=1, le=4094)] | None = None

    @model_validator(mode="after")
    def _physical(self) -> Network:
        if self.external and self.physnet is None:
            raise ValueError("physnet: an external network names the physical network it is on")
        if not self.external and self.physnet is not None:
            raise ValueError("physnet: only an external network is on a physical network")
        if self.vlan is not None and self.physnet is None:
            raise ValueError("vlan: only an external network's segment has a VLAN")
        return self


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str
    end: str

    _addr = field_validator("start", "end")(lambda cls, v: _address(v))

    @model_validator(mode="after")
    def _order(self) -> Pool:
        a, b = ipaddress.ip_address(self.start), ipaddress.ip_address(self.end)
        if a.version != b.version or int(a) > int(b):
            raise ValueError(f"pool {self.start}-{self.end}: start must not be after end")
        return self


class Route(BaseModel):
    """A static route: `cidr` via `nexthop` (several routes for one CIDR: ECMP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cidr: str
    nexthop: str

    _hop = field_validator("nexthop")(lambda cls, v: _address(v))

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_network(v, strict=True))
        except ValueError as e:
            raise ValueError(f"{v!r} is not a network in CIDR notation ({e})") from None

    @model_validator(mode="after")
    def _family(self) -> Route:
        if ipaddress.ip_network(self.cidr).version != ipaddress.ip_address(self.nexthop).version:
            raise ValueError(f"nexthop: {self.nexthop} is not of {self.cidr}'s family")
        return self


class Subnet(Resource):
    kind: ClassVar[str] = "subnet"
    plural: ClassVar[str] = "subnets"
    network: str
    tenant: str = ""  # the network's; filled in by the rules
    cidr: str
    gateway: str | None = None
    allocation_pools: list[Pool] = Field(default_factory=list)
    # what the switch answers DHCP (v4; v6 stateful or stateless) and router
    # solicitations with, from the model: no DHCP server process
    dhcp: bool = True
    dns_nameservers: list[str] = Field(default_factory=list)
    host_routes: list[Route] = Field(default_factory=list)  # DHCP option 121 (and 3)
    lease_time: Annotated[int, Field(ge=60, le=1 << 31)] = 43200
    # IPv6: how workloads get their address -- SLAAC from the router's advertisement
    # (the port's address must be the EUI-64 of its MAC), or DHCPv6 (stateful), or
    # SLAAC plus DHCPv6 for the rest (stateless); None: neither (static)
    ipv6_mode: Literal["slaac", "dhcpv6-stateful", "dhcpv6-stateless"] | None = None

    _dns = field_validator("dns_nameservers")(lambda cls, v: [_address(a) for a in v])

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"{v!r} is not a network in CIDR notation ({e})") from None
        if net.num_addresses < 4:
            raise ValueError(f"{v}: a subnet needs at least 4 addresses")
        return str(net)

    @field_validator("gateway")
    @classmethod
    def _gw(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        v = _address(v)
        cidr = info.data.get("cidr")
        if cidr is not None and not _usable(v, cidr):
            raise ValueError(f"{v} is not a usable address of {cidr}")
        return v

    @field_validator("allocation_pools")
    @classmethod
    def _pools(cls, v: list[Pool], info: ValidationInfo) -> list[Pool]:
        cidr = info.data.get("cidr")
        for p in v:
            if cidr is not None and not (_usable(p.start, cidr) and _usable(p.end, cidr)):
                raise ValueError(f"pool {p.start}-{p.end} is not inside {cidr}")
        return v

    @property
    def network_obj(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    @property
    def ip_version(self) -> int:
        return self.network_obj.version

    @model_validator(mode="after")
    def _inside(self) -> Subnet:
        net = self.network_obj
        if self.gateway is None:
            object.__setattr__(self, "gateway", str(net.network_address + 1))
        if not self.allocation_pools:
            first = net.network_address + 2
            last = net.broadcast_address - (1 if net.version == 4 else 0)
            object.__setattr__(self, "allocation_pools", [Pool(start=str(first), end=str(last))])
        return self

    @model_validator(mode="after")
    def _v6_only(self) -> Subnet:
        if self.ipv6_mode is not None and self.network_obj.version != 6:
            raise ValueError("ipv6_mode: only an IPv6 subnet has one")
        if self.ipv6_mode in ("slaac", "dhcpv6-stateless") and self.network_obj.prefixlen != 64:
            raise ValueError(f"ipv6_mode: SLAAC needs a /64, {self.cidr} is not one")
        return self

    def usable(self, addr: str) -> bool:
        return _usable(addr, self.cidr)


def _usable(addr: str, cidr: str) -> bool:
    """In the CIDR, and not its network address (nor, for IPv4, its broadcast)."""
    a, net = ipaddress.ip_address(addr), ipaddress.ip_network(cidr)
    if a.version != net.version or a not in net or a == net.network_address:
        return False
    return not (net.version == 4 and a == net.broadcast_address)


class FixedIP(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    subnet: str | None = None
    ip: str | None = None

    _addr = field_validator("ip")(lambda cls, v: None if v is None else _address(v))


class AddressPair(BaseModel):
    """Extra addresses a port may send from (a VIP, a container behind the vNIC)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ip: str
    mac: str | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an address or CIDR") from None

    _mac = field_validator("mac")(lambda cls, v: None if v is None else normalize_mac(v))


class Port(Resource):
    """A vNIC on a network, bound to the chassis that hosts its workload."""

    kind: ClassVar[str] = "port"
    plural: ClassVar[str] = "ports"
    network: str
    tenant: str = ""  # the network's; filled in by the rules
    mac: str | None = None
    fixed_ips: list[FixedIP] = Field(default_factory=list)
    port_security: bool = True
    allowed_address_pairs: list[AddressPair] = Field(default_factory=list)
    admin_up: bool = True
    chassis: str | None = None
    # security groups of its tenant it is a member of, besides those whose selector picks it
    security_groups: list[str] = Field(default_factory=list)
    # the port's number inside its network, carried in flows and tunnel headers
    tunnel_key: Annotated[int, Field(ge=1, le=MAX_PORT_KEY)] | None = None

    _mac = field_validator("mac")(lambda cls, v: None if v is None else normalize_mac(v))

    @property
    def ips(self) -> list[str]:
        return [f.ip for f in self.fixed_ips if f.ip]

    def spec_key(self) -> tuple[Any, ...]:
        """What the compiler reads of a port, hashable."""
        pairs = tuple((p.ip, p.mac) for p in self.allowed_address_pairs)
        return (self.name, self.mac, tuple(self.ips), self.port_security, pairs, self.admin_up,
                self.tunnel_key)  # fmt: skip

    @property
    def iface(self) -> str:
        """The interface name the workload's end of this port has on its chassis."""
        return iface_name(self.id)


MAX_ASN = (1 << 32) - 1  # 4-octet AS numbers (RFC 6793)


class BGPPeer(BaseModel):
    """An upstream router a chassis' BGP speaker peers with (eBGP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ip: str
    asn: Annotated[int, Field(ge=1, le=MAX_ASN)]

    _ip = field_validator("ip")(lambda cls, v: _address(v))


class BGPUplink(BaseModel):
    """A chassis' BGP on one physnet: its own addresses there (the next hop of what it
    advertises, one per family) and the upstream routers it peers with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    addresses: Annotated[list[str], Field(min_length=1, max_length=2)]
    peers: Annotated[list[BGPPeer], Field(min_length=1)]

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        out = [_address(a) for a in v]
        if len({ipaddress.ip_address(a).version for a in out}) != len(out):
            raise ValueError("one address per family (IPv4, IPv6)")
        return out

    @model_validator(mode="after")
    def _families(self) -> BGPUplink:
        mine = {ipaddress.ip_address(a).version: a for a in self.addresses}
        for i, p in enumerate(self.peers):
            v = ipaddress.ip_address(p.ip).version
            if v not in mine:
                raise ValueError(f"peers[{i}].ip: {p.ip} is IPv{v}: no IPv{v} address here")
            if p.ip == mine[v]:
                raise ValueError(f"peers[{i}].ip: {p.ip} is this chassis' own address")
        return self


class ChassisBGP(BaseModel):
    """A chassis' BGP speaker: its AS and, per physnet it has an uplink for, its
    sessions there (`bgp` module)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    asn: Annotated[int, Field(ge=1, le=MAX_ASN)]
    physnets: dict[Annotated[str, Field(pattern=NAME_RE)], BGPUplink] = Field(min_length=1)
    bfd: bool = True  # BFD on every session: a dead speaker's routes go in about a second


class Chassis(Resource):
    """A hypervisor host and the switch that runs on it."""

    kind: ClassVar[str] = "chassis"
    plural: ClassVar[str] = "chassis"
    underlay: str | None = None  # the tunnel endpoint (VTEP) address
    underlay_mtu: Annotated[int, Field(ge=1280, le=65535)] = 1500
    encap: Literal["vxlan", "geneve", "nvgre"] = "geneve"  # what this chassis receives
    endpoint: str | None = None  # an OpenFlow target the controller dials; else the switch dials in
    switch: Literal["vnet", "ovs"] = "vnet"
    datapath_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    # Open vSwitch only: the host's OVSDB, where the controller keeps its bridge and ports
    ovsdb: str | None = None
    bridge: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] = "br-int"
    datapath_type: Literal["system", "netdev"] = "netdev"
    # physical network name -> the uplink interface that reaches it on this chassis
    physnets: dict[
        Annotated[str, Field(pattern=NAME_RE)], Annotated[str, Field(pattern=IFNAME_RE)]
    ] = Field(default_factory=dict)
    # its BGP speaker, advertising floating IPs and routers' subnets to the physical network
    bgp: ChassisBGP | None = None

    _addr = field_validator("underlay")(lambda cls, v: None if v is None else _address(v))

    @model_validator(mode="after")
    def _bgp_uplinks(self) -> Chassis:
        for p in self.bgp.physnets if self.bgp is not None else {}:
            if p not in self.physnets:
                raise ValueError(f"bgp.physnets.{p}: the chassis has no uplink for physnet {p!r}")
        return self

    @property
    def overlay_mtu(self) -> int:
        """The largest inner IP packet a tunnel to this chassis carries."""
        ipv6 = self.underlay is not None and ":" in self.underlay
        opts = GENEVE_OPTION if self.encap == "geneve" else 0
        return self.underlay_mtu - overhead(self.encap, opts, ipv6)

    @field_validator("endpoint", "ovsdb")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(tcp:[^:]+:\d+|unix:/.+)$", v):
            raise ValueError(f"{v!r}: expected tcp:HOST:PORT or unix:/PATH")
        return v


class SecurityGroup(Resource):
    """Ports that share allow rules: members by `selector` (labels) or listed by the port.

    Allow-only and stateful: a member port admits on ingress only what one of
    its groups' ingress rules allows; its egress is open unless one of its
    groups has egress rules.  Replies to an allowed connection always pass.
    """

    kind: ClassVar[str] = "security_group"
    plural: ClassVar[str] = "security_groups"
    tenant: str
    selector: Selector | None = None  # None: members are the ports that list the group
    rules: list[GroupRule] = Field(default_factory=list)


class Policy(Resource):
    """An ordered section of a tenant's distributed firewall, before its security groups.

    Policies are tried by `priority` (lower first, unique in a tenant), rules in
    order; the first rule that matches decides: allow, deny, reject, or pass
    the decision on to the security groups.  `applied_to` picks the ports the
    policy guards (`{}`: every port of the tenant).
    """

    kind: ClassVar[str] = "policy"
    plural: ClassVar[str] = "policies"
    tenant: str
    priority: Annotated[int, Field(ge=0, le=65535)]
    applied_to: Selector = Field(default_factory=dict)
    rules: list[PolicyRule] = Field(default_factory=list)


class RouterInterface(BaseModel):
    """A router's leg on a subnet: the subnet's gateway address is the router's there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subnet: str
    # filled in on admission: the router's MAC on that network, and its logical port's
    # number in the network (as a port's `tunnel_key`)
    mac: str | None = None
    tunnel_key: Annotated[int, Field(ge=1, le=MAX_PORT_KEY)] | None = None

    _mac = field_validator("mac")(lambda cls, v: None if v is None else normalize_mac(v))


class Gateway(BaseModel):
    """A router's way out: an address on an external network, on gateway chassis."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    network: str
    ip: str | None = None  # allocated from the network's subnet unless given
    # its IPv6 address (routed, never translated): allocated when `ip` is IPv4 and the
    # network has an IPv6 subnet, unless given
    ip6: str | None = None
    chassis: list[str] = Field(default_factory=list)  # in priority order: the first alive is active
    snat: bool = True  # the router's internal IPv4 subnets leave as its gateway address
    mac: str | None = None  # filled in on admission
    tunnel_key: Annotated[int, Field(ge=1, le=MAX_PORT_KEY)] | None = None  # on admission

    _ip = field_validator("ip", "ip6")(lambda cls, v: None if v is None else _address(v))
    _mac = field_validator("mac")(lambda cls, v: None if v is None else normalize_mac(v))


class Router(Resource):
    """A distributed logical router: routes between its subnets on the sender's chassis."""

    kind: ClassVar[str] = "router"
    plural: ClassVar[str] = "routers"
    tenant: str
    interfaces: list[RouterInterface] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    gateway: Gateway | None = None
    admin_up: bool = True
    # what chassis' BGP speakers advertise of it: its floating IPs (/32), and on request
    # its subnets that leave untranslated (IPv6, and IPv4 without `snat`)
    advertise: list[Literal["floating_ips", "subnets"]] = Field(
        default_factory=lambda: ["floating_ips"]  # type: ignore[arg-type]
    )
    # the router's datapath number (its logical pipeline's key); filled in on admission
    tunnel_key: Annotated[int, Field(ge=1, le=MAX_ROUTER_KEY)] | None = None


class PortForwarding(BaseModel):
    """A floating IP's `external_port` (protocol) to a port's `internal_port`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    protocol: Literal["tcp", "udp"]
    external_port: Annotated[int, Field(ge=1, le=65535)]
    port: str
    internal_port: Annotated[int, Field(ge=1, le=65535)]
    internal_ip: str | None = None  # the port's (first IPv4) address unless given

    _ip = field_validator("internal_ip")(lambda cls, v: None if v is None else _address(v))


class FloatingIP(Resource):
    """An address of an external network translated 1:1 to a port's, or per port
    (`port_forwardings`), by the router of the port's subnet."""

    kind: ClassVar[str] = "floating_ip"
    plural: ClassVar[str] = "floating_ips"
    tenant: str
    network: str
    ip: str | None = None  # allocated from the network's subnet unless given
    port: str | None = None
    port_forwardings: list[PortForwarding] = Field(default_factory=list)
    # the MAC a distributed floating IP answers ARP with from its port's chassis; filled
    # in on admission
    mac: str | None = None

    _ip = field_validator("ip")(lambda cls, v: None if v is None else _address(v))
    _mac = field_validator("mac")(lambda cls, v: None if v is None else normalize_mac(v))

    @model_validator(mode="after")
    def _one_use(self) -> FloatingIP:
        if self.port is not None and self.port_forwardings:
            raise ValueError("port_forwardings: a floating IP of a port forwards all its ports")
        return self


class Neighbour(Resource):
    """A router's learned neighbour: an address on one of its networks that no port
    holds, and the MAC it answered ARP or neighbour discovery with (OVN's MAC_Binding).

    Written by the controller only (`SYSTEM_KINDS`): users read it, never write it.
    Its id is derived from (router, network, address), so every controller that learns
    the same binding writes the same object; its name is the address (`:` as `-`).
    """

    kind: ClassVar[str] = "neighbour"
    plural: ClassVar[str] = "neighbours"
    tenant: str = ""  # the router's; filled in on admission
    router: str
    network: str
    ip: str
    mac: str
    seen_at: Annotated[float, Field(ge=0)] = 0.0  # seconds since the epoch, last heard

    _ip = field_validator("ip")(lambda cls, v: _address(v))
    _mac = field_validator("mac")(lambda cls, v: normalize_mac(v))


class BFDStatus(Resource):
    """What one chassis' BFD sessions say of its peers (`liveness`): its id is the
    reporting chassis' id, `sessions` maps each peer chassis (id) to the session's
    state there.  Written by the controller only (`SYSTEM_KINDS`)."""

    kind: ClassVar[str] = "bfd_status"
    plural: ClassVar[str] = "bfd_statuses"
    name: Annotated[str, Field(pattern=NAME_RE)] = "chassis"  # the chassis'; filled in on admission
    sessions: dict[
        Annotated[str, Field(pattern=ID_RE)], Literal["up", "down", "init", "admin_down"]
    ] = Field(default_factory=dict)


class ChassisStatus(Resource):
    """What a chassis' agent says of its chassis (`vnet agent run`): its id is the
    chassis' id, `switch` whether the agent holds a session to the chassis' switch,
    `ports_up` the ports (ids) whose flows it has installed there.  Written by the
    chassis' agent only (`SYSTEM_KINDS`); the API reads a port's status from it when
    the port's chassis is programmed by an agent, not by the controller itself."""

    kind: ClassVar[str] = "chassis_status"
    plural: ClassVar[str] = "chassis_statuses"
    name: Annotated[str, Field(pattern=NAME_RE)] = "chassis"  # the chassis'; filled in on admission
    switch: bool = False
    ports_up: list[Annotated[str, Field(pattern=ID_RE)]] = Field(default_factory=list)


KINDS: dict[str, type[Resource]] = {
    c.kind: c
    for c in (Tenant, Network, Subnet, Port, Chassis, SecurityGroup, Policy, Router, FloatingIP,
              Neighbour, BFDStatus, ChassisStatus)
}  # fmt: skip
# kinds the system writes (learned state kept as desired state): users read them only
SYSTEM_KINDS = ("neighbour", "bfd_status", "chassis_status")
# dependency order: what must exist before what refers to it (ports name groups;
# policies come last so a file's ports exist before the policies that select them)
ORDER = ("tenant", "chassis", "network", "subnet", "security_group", "port", "router",
         "floating_ip", "policy")  # fmt: skip
