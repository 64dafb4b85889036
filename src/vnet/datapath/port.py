"""Switch ports: configuration, runtime state and counters, and the device they drive.

A port is three things kept apart (configuration is never mixed with state):

* `PortConfig` -- what the operator said: VLAN mode (access with one tag, or
  trunk with an allowed list and a native VLAN), port security (forged
  transmits, MAC changes, promiscuous mode, allowed IP addresses), MAC limit,
  flooding.  Immutable; changing it replaces it.
* `Port` -- the port at run time: OpenFlow number, liveness, the MAC it is
  locked to, counters (`PortStats`, the OpenFlow port-stats fields).
* a `Device` -- where frames come from and go to: an AF_PACKET socket on a
  netdev, a TAP file descriptor, or an in-memory queue.  Devices do the I/O;
  nothing else in the datapath touches a socket.

Frames travel with their virtio-net header (`vnet_hdr`, 10 bytes, or b"" when
the device has none) so checksum-offloaded and GSO frames pass from one
offload-capable device to another untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from ..packet.addr import ip4_int, ip4_str, ip6_int, ip6_str, mac_int, mac_str

__all__ = [
    "TUNNEL_KINDS",
    "Device",
    "Frame",
    "Port",
    "PortConfig",
    "PortConfigError",
    "PortStats",
    "VlanMode",
    "parse_port_spec",
    "send_all",
]

Frame = tuple[bytes, bytes]  # (vnet header or b"", Ethernet frame)
TUNNEL_KINDS = ("vxlan", "geneve", "nvgre")
KINDS = ("netdev", "tap", "internal", "memory", *TUNNEL_KINDS)


class VlanMode:
    ACCESS = "access"
    TRUNK = "trunk"


class PortConfigError(ValueError):
    """A port option that does not parse; names the option."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"{option}: {message}")


@dataclass(frozen=True, slots=True)
class PortConfig:
    name: str
    kind: str = "netdev"  # netdev | tap | internal | memory | vxlan | geneve | nvgre
    ofport: int | None = None  # requested OpenFlow port number
    vlan_mode: str = VlanMode.ACCESS
    tag: int = 0  # access VLAN; 0 = untagged network
    trunks: frozenset[int] = frozenset()  # allowed VLANs on a trunk; empty = all
    native_vlan: int | None = None  # untagged frames on a trunk belong here
    # port security: the secure defaults of the big vSwitches
    port_security: bool = True
    mac: int | None = None  # the workload's MAC; None = lock to the first one seen
    forged_transmits: bool = False
    mac_changes: bool = False
    promiscuous: bool = False
    allowed_ips: frozenset[tuple[int, int]] = frozenset()  # (version, address); empty = any
    mac_limit: int = 0  # learned MACs on this port; 0 = no limit
    no_flood: bool = False
    # tunnel ports: the local underlay address (VTEP), and whether UDP carries a checksum
    local_ip: int | None = None
    udp_csum: bool = True
    # a netdev that does not exist yet is waited for (down until it appears), as a VM's
    # tap is plugged before its VM starts or a workload's cable arrives after a migration
    wait: bool = False

    @property
    def tunnel(self) -> bool:
        return self.kind in TUNNEL_KINDS

    def with_(self, **changes: object) -> PortConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    def carries(self, vlan: int) -> bool:
        if self.vlan_mode == VlanMode.ACCESS:
            return vlan == self.tag
        return not self.trunks or vlan in self.trunks or vlan == self.native_vlan

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"name": self.name, "kind": self.kind, "vlan_mode": self.vlan_mode}
        if self.vlan_mode == VlanMode.ACCESS:
            d["tag"] = self.tag
        else:
            d["trunks"] = sorted(self.trunks)
            d["native_vlan"] = self.native_vlan
        d["port_security"] = self.port_security
        if self.port_security:
            d["mac"] = mac_str(self.mac) if self.mac is not None else None
            d["forged_transmits"] = self.forged_transmits
            d["mac_changes"] = self.mac_changes
            d["promiscuous"] = self.promiscuous
            d["allowed_ips"] = sorted(
                ip4_str(a) if v == 4 else ip6_str(a) for v, a in self.allowed_ips
            )
        d["mac_limit"] = self.mac_limit
        d["no_flood"] = self.no_flood
        if self.tunnel:
            d["local_ip"] = ip4_str(self.local_ip or 0)
            d["udp_csum"] = self.udp_csum
        return d


def _bool(option: str, text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise PortConfigError(option, f"expected true or false, got {text!r}")


def _vlan(option: str, text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise PortConfigError(option, f"not a VLAN id: {text!r}") from None
    if not 1 <= v <= 4094:
        raise PortConfigError(option, f"VLAN {v} out of range 1-4094")
    return v


def _ip(option: str, text: str) -> tuple[int, int]:
    try:
        return (6, ip6_int(text)) if ":" in text else (4, ip4_int(text))
    except ValueError:
        raise PortConfigError(option, f"not an IP address: {text!r}") from None


def parse_port_spec(spec: str, kind: str = "netdev", port_security: bool = True) -> PortConfig:
    """`NAME[,option=value...]`, e.g. `veth-a,tag=10`, `veth-b,trunks=10+20,native=10`,
    `vm1,mac=02:00:00:00:00:01,ip=10.0.0.1+fd00::1`, `uplink,port_security=false`,
    `vxlan0,kind=vxlan,local_ip=192.168.0.1[,csum=false]` (a flow-based tunnel port),
    `vm1-tap,wait=true` (a device that may not exist yet: the port waits for it).

    `port_security` is the switch's default for a port whose spec does not say
    (`vnet switch run --port-security off`: a plain OpenFlow switch under an
    outside controller); the spec's own `port_security=` wins.

    Lists use `+` (the comma separates options)."""
    name, _, rest = spec.partition(",")
    if not name or "=" in name:
        raise PortConfigError("name", f"port spec must start with a device name: {spec!r}")
    cfg = PortConfig(name=name, kind=kind, port_security=port_security)
    changes: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        opt, eq, val = item.partition("=")
        if not eq:
            raise PortConfigError(opt, "expected option=value")
        if opt == "ofport":
            try:
                changes["ofport"] = int(val)
            except ValueError:
                raise PortConfigError(opt, f"not a port number: {val!r}") from None
        elif opt == "tag":
            changes["vlan_mode"] = VlanMode.ACCESS
            changes["tag"] = _vlan(opt, val)
        elif opt == "trunks":
            changes["vlan_mode"] = VlanMode.TRUNK
            changes["trunks"] = frozenset(_vlan(opt, v) for v in val.split("+") if v)
        elif opt in ("native", "native_vlan"):
            changes["vlan_mode"] = VlanMode.TRUNK
            changes["native_vlan"] = _vlan(opt, val)
        elif opt == "mac":
            try:
                changes["mac"] = mac_int(val)
            except ValueError:
                raise PortConfigError(opt, f"not a MAC address: {val!r}") from None
        elif opt in ("ip", "ips", "allowed_ips"):
            changes["allowed_ips"] = frozenset(_ip(opt, v) for v in val.split("+") if v)
        elif opt in (
            "port_security",
            "forged_transmits",
            "mac_changes",
            "promiscuous",
            "no_flood",
            "wait",
        ):
            changes[opt] = _bool(opt, val)
        elif opt == "mac_limit":
            try:
                changes["mac_limit"] = int(val)
            except ValueError:
                raise PortConfigError(opt, f"not a number: {val!r}") from None
        elif opt == "kind":
            if val not in KINDS:
                raise PortConfigError(opt, f"unknown kind {val!r} ({', '.join(KINDS)})")
            changes["kind"] = val
        elif opt == "local_ip":
            try:
                changes["local_ip"] = ip4_int(val)
            except ValueError:
                raise PortConfigError(opt, f"not an IPv4 address: {val!r}") from None
        elif opt in ("csum", "udp_csum"):
            changes["udp_csum"] = _bool(opt, val)
        else:
            raise PortConfigError(opt, "unknown port option")
    cfg = cfg.with_(**changes) if changes else cfg
    if cfg.tunnel:
        if cfg.local_ip is None:
            raise PortConfigError(
                "local_ip", f"a {cfg.kind} port needs local_ip=ADDRESS (its VTEP)"
            )
        # a VTEP carries many workloads' MACs: port security belongs on their own ports
        cfg = cfg.with_(port_security=changes.get("port_security", False))
    elif "local_ip" in changes or "udp_csum" in changes:
        raise PortConfigError("local_ip", "only tunnel ports (vxlan, geneve, nvgre) take it")
    return cfg


@dataclass(slots=True)
class PortStats:
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class Device(Protocol):
    """Frame I/O for one port.  `fileno` is None for devices with nothing to poll."""

    name: str
    hw_addr: int
    mtu: int
    vnet_hdr: bool  # frames carry a virtio-net header

    def fileno(self) -> int | None: ...

    def recv_batch(self, limit: int) -> list[Frame]: ...

    def send(self, hdr: bytes, frame: bytes) -> bool:
        """False when the device could not take the frame (queue full, gone)."""
        ...

    def flush(self) -> None:
        """Complete the sends a device batches (a transmit ring); the switch calls it."""
        ...

    def link_up(self) -> bool: ...

    def close(self) -> None: ...


def send_all(dev: Device, frames: Sequence[Frame]) -> int:
    """Send `frames` in order until the device refuses one; how many it took.

    A device with a batch path (`send_many`, a transmit ring) gets the list
    whole; any other is sent one frame at a time.
    """
    many = getattr(dev, "send_many", None)
    if many is not None:
        return int(many(frames))
    for n, (hdr, frame) in enumerate(frames):
        if not dev.send(hdr, frame):
            return n
    return len(frames)


@dataclass(eq=False)
class Port:
    port_no: int
    config: PortConfig
    device: Device
    stats: PortStats = field(default_factory=PortStats)
    admin_up: bool = True
    link_up: bool = True
    locked_mac: int | None = None  # the MAC port security pinned (configured or first seen)
    learned: int = 0  # MACs the learning table holds for this port
    drops: dict[str, int] = field(default_factory=dict)
    created: float = 0.0
    tunnel: bool = False  # a VTEP: frames leave encapsulated (config.kind)
    # frames for a `wait` port whose device has not arrived: (time, vnet header, frame, dst)
    held: list[tuple[float, bytes, bytes, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def live(self) -> bool:
        return self.admin_up and self.link_up

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n
