"""The controller's answers to DHCP, DHCPv6 and router solicitations, from the model.

`compiler.dhcp` punts a port's requests (after port security) with a cookie
naming the kind and the port; `answer` reads the request and the model and
returns the frame to send straight back out of the packet-in's port (the
punt handler loads `FLAG_ANSWER` and sends it), and the name of what it did,
which the handler counts (`dhcp_offer`, `dhcp_ack`, `dhcp_nak`,
`dhcp_release`, `dhcp_decline`, `dhcpv6_advertise`, `dhcpv6_reply`,
`ra_solicited`, and `*_silent`, `*_malformed`, `*_stale` for no answer).

What is answered (`packet.dhcp`, `packet.dhcpv6`, `packet.ra` decide the
protocol):
- the port's address in the punt's subnet; its prefix length;
- the server: the subnet's gateway address (the router's there) and, when a
  router has an interface on the subnet, that interface's MAC; else a MAC
  derived from the network (`derived_mac(network, "dhcp")`), fixed while the
  network lives.  The default route (option 3, or inside 121) only when a
  router is on the subnet: a gateway nobody answers for is no route;
- the subnet's `dns_nameservers` of the family, `host_routes` (IPv4, option
  121), `lease_time`; the network's MTU (option 26, the RA's MTU option);
- DHCPv6: the address only on a `dhcpv6-stateful` subnet (stateless: DNS
  only); an RA's flags and prefix per the subnet's `ipv6_mode`.
A request whose client hardware address is not the port's MAC gets no
answer: the port has one address, for its own MAC.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..model.objects import Network, Subnet
from ..model.state import State, derived_mac
from ..packet import dhcp, dhcpv6, ethernet, ipv4, ipv6, ra, udp
from ..packet.addr import ip4_int, mac_int
from ..packet.errors import DecodeError

__all__ = ["answer", "server_mac"]


def server_mac(state: State, subnet: Any) -> tuple[str, bool]:
    """The MAC the answers come from, and whether a router is on the subnet."""
    for r in state.all("router"):
        for itf in r.interfaces:
            if itf.subnet == subnet.id and itf.mac:
                return itf.mac, True
    return derived_mac(subnet.network, "dhcp"), False


def _address(port: Any, subnet: Any) -> str | None:
    return next((f.ip for f in port.fixed_ips if f.subnet == subnet.id and f.ip), None)


def _of(values: list[str], version: int) -> tuple[int, ...]:
    return tuple(
        int(ipaddress.ip_address(a)) for a in values if ipaddress.ip_address(a).version == version
    )


def _l4(frame: bytes) -> tuple[int, int, int, int, int, bytes]:
    """(ethertype, src MAC, src IP, ip proto, its offset, frame) of an untagged IP frame."""
    eth, off = ethernet.parse(frame)
    if eth.ethertype == 0x0800:
        h4, o = ipv4.parse(frame, off)
        return 0x0800, eth.src, h4.src, h4.proto, o, frame
    if eth.ethertype == 0x86DD:
        h6, o = ipv6.parse(frame, off)
        return 0x86DD, eth.src, h6.src, h6.next_header, o, frame
    raise dhcp.DhcpError(f"ethertype {eth.ethertype:#x}: no untagged IP frame")


def answer(
    state: State, kind: str, port_id: str, subnet_id: str, frame: bytes
) -> tuple[bytes | None, str]:
    """The answer to a punted request (None: none due) and what to count."""
    port, subnet = state.get("port", port_id), state.get("subnet", subnet_id)
    net = state.get("network", port.network) if port is not None else None
    prefix = "dhcp" if kind == "dhcpv4" else "dhcpv6" if kind == "dhcpv6" else "ra"
    addr = _address(port, subnet) if port is not None and subnet is not None else None
    if port is None or subnet is None or net is None or addr is None or not port.mac:
        return None, f"{prefix}_stale"
    smac, routed = server_mac(state, subnet)
    try:
        _, src_mac, src_ip, proto, off, _ = _l4(frame)
        if kind == "dhcpv4":
            if proto != 17:
                return None, "dhcp_malformed"
            _, o = udp.parse(frame, off)
            msg = dhcp.parse(frame, o)
            lease = None
            if msg.chaddr == mac_int(port.mac):
                lease = dhcp.Lease(
                    address=ip4_int(addr),
                    prefix_len=subnet.network_obj.prefixlen,
                    server_id=ip4_int(subnet.gateway),
                    router=ip4_int(subnet.gateway) if routed else 0,
                    dns=_of(subnet.dns_nameservers, 4),
                    mtu=net.mtu or 0,
                    lease_time=subnet.lease_time,
                    routes=tuple(
                        (int(n.network_address), n.prefixlen, ip4_int(r.nexthop))
                        for r in subnet.host_routes
                        if (n := ipaddress.ip_network(r.cidr)).version == 4
                    ),
                )
            reply = dhcp.decide(msg, lease)
            if reply is None:
                names = {dhcp.RELEASE: "release", dhcp.DECLINE: "decline"}
                return None, f"dhcp_{names.get(msg.msg_type, 'silent')}"
            assert lease is not None
            out = dhcp.frame(msg, reply, lease, mac_int(smac))
            return out, "dhcp_" + {dhcp.OFFER: "offer", dhcp.ACK: "ack", dhcp.NAK: "nak"}[reply]
        if kind == "dhcpv6":
            if proto != 17:
                return None, "dhcpv6_malformed"
            _, o = udp.parse(frame, off)
            msg6 = dhcpv6.parse(frame, o)
            duid = dhcpv6.duid_ll(mac_int(smac))
            reply6 = dhcpv6.decide(msg6, duid)
            if reply6 is None:
                return None, "dhcpv6_silent"
            stateful = subnet.ipv6_mode == "dhcpv6-stateful"
            lease6 = dhcpv6.Lease6(
                int(ipaddress.ip_address(addr)) if stateful else 0,
                _of(subnet.dns_nameservers, 6),
                subnet.lease_time,
            )
            out = dhcpv6.frame(msg6, reply6, lease6, mac_int(smac), src_mac, src_ip)
            return out, "dhcpv6_advertise" if reply6 == dhcpv6.ADVERTISE else "dhcpv6_reply"
        if proto != 58 or subnet.ipv6_mode is None:
            return None, "ra_malformed"
        out = _advertisement(smac, subnet, net, src_mac if src_ip else None, src_ip or None)
        return out, "ra_solicited"
    except (DecodeError, dhcp.DhcpError):
        return None, f"{prefix}_malformed"


def _advertisement(
    smac: str, sub: Subnet, net: Network, dst_mac: int | None = None, dst_ip: int | None = None
) -> bytes:
    """The subnet's router advertisement from `smac`: to all nodes, or to one solicitor."""
    assert sub.ipv6_mode is not None
    n6 = sub.network_obj
    return ra.frame(
        mac_int(smac), int(n6.network_address), n6.prefixlen, sub.ipv6_mode,
        mtu=net.mtu or 0, dst_mac=dst_mac, dst_ip=dst_ip,
    )  # fmt: skip


def advertisements(state: State, chassis: str | None) -> list[tuple[str, bytes]]:
    """The unsolicited router advertisement due to each port bound to `chassis` that has
    an address on a subnet with an `ipv6_mode`: (the port's interface name, the frame)."""
    out: list[tuple[str, bytes]] = []
    for port in state.all("port"):
        net = state.get("network", port.network)
        if port.chassis != chassis or chassis is None or net is None:
            continue
        if not (port.admin_up and net.admin_up):
            continue
        for f in port.fixed_ips:
            sub = state.get("subnet", f.subnet) if f.subnet else None
            if sub is None or sub.ipv6_mode is None:
                continue
            smac, _ = server_mac(state, sub)
            out.append((port.iface, _advertisement(smac, sub, net)))
            break
    return out
