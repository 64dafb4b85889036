"""DHCPv4 answers, judged by scapy: what is offered, acknowledged, refused, and to whom."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.checksums import bad_checksums
from vnet.packet import dhcp
from vnet.packet.addr import ip4_int, mac_int

CLIENT, SERVER_MAC = "02:00:00:00:00:0a", "0a:00:00:00:01:04"
ADDR, GW, DNS1, DNS2 = "10.0.1.10", "10.0.1.1", "10.0.0.53", "10.0.0.54"
LEASE = dhcp.Lease(
    address=ip4_int(ADDR),
    prefix_len=24,
    server_id=ip4_int(GW),
    router=ip4_int(GW),
    dns=(ip4_int(DNS1), ip4_int(DNS2)),
    mtu=1442,
    lease_time=3600,
)


def client(msg_type: str, *, ciaddr: str = "0.0.0.0", flags: int = 0, **opts: str) -> dhcp.Message:
    """A client message as scapy writes it, read by the server."""
    options: list[tuple[str, object] | str] = [("message-type", msg_type)]
    options += list(opts.items())
    options.append("end")
    p = BOOTP(chaddr=bytes.fromhex(CLIENT.replace(":", "")), xid=0x1234, ciaddr=ciaddr, flags=flags)
    return dhcp.parse(bytes(p / DHCP(options=options)))


def judged(out: bytes) -> Ether:
    assert bad_checksums(out) == []
    p = Ether(out)
    assert p.src == SERVER_MAC
    assert (p[IP].src, p[UDP].sport, p[UDP].dport) == (GW, 67, 68)
    assert p[BOOTP].op == 2 and p[BOOTP].xid == 0x1234
    assert len(bytes(p[BOOTP])) >= 300
    return p


def opts(p: Ether) -> dict[str, object]:
    return {o[0]: o[1] if len(o) == 2 else o[1:] for o in p[DHCP].options if isinstance(o, tuple)}


def answer(msg: dhcp.Message, lease: dhcp.Lease = LEASE) -> Ether | None:
    kind = dhcp.decide(msg, lease)
    return None if kind is None else judged(dhcp.frame(msg, kind, lease, mac_int(SERVER_MAC)))


def test_discover_gets_an_offer_with_the_whole_configuration() -> None:
    p = answer(client("discover"))
    assert p is not None
    assert (p.dst, p[IP].dst, p[BOOTP].yiaddr) == (CLIENT, ADDR, ADDR)
    o = opts(p)
    assert o["message-type"] == 2
    assert o["server_id"] == GW and o["router"] == GW
    assert o["subnet_mask"] == "255.255.255.0"
    assert o["name_server"] == (DNS1, DNS2)
    assert o["interface-mtu"] == 1442
    assert (o["lease_time"], o["renewal_time"], o["rebinding_time"]) == (3600, 1800, 3150)


def test_broadcast_bit_gets_a_broadcast_offer() -> None:
    p = answer(client("discover", flags=0x8000))
    assert p is not None and (p.dst, p[IP].dst) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    assert p[BOOTP].flags == 0x8000


def test_selecting_request_is_acked_and_one_for_another_server_ignored() -> None:
    p = answer(client("request", server_id=GW, requested_addr=ADDR))
    assert p is not None and opts(p)["message-type"] == 5 and p[BOOTP].yiaddr == ADDR
    assert answer(client("request", server_id="10.0.1.2", requested_addr=ADDR)) is None
    nak = answer(client("request", server_id=GW, requested_addr="10.0.1.99"))
    assert nak is not None and opts(nak)["message-type"] == 6


def test_init_reboot_with_a_wrong_address_is_naked_by_broadcast() -> None:
    p = answer(client("request", requested_addr="10.0.9.9"))
    assert p is not None
    o = opts(p)
    assert o["message-type"] == 6 and "lease_time" not in o and "router" not in o
    assert (p.dst, p[IP].dst, p[BOOTP].yiaddr) == (
        "ff:ff:ff:ff:ff:ff",
        "255.255.255.255",
        "0.0.0.0",
    )
    ok = answer(client("request", requested_addr=ADDR))
    assert ok is not None and opts(ok)["message-type"] == 5


def test_renewal_is_acked_unicast_to_ciaddr() -> None:
    p = answer(client("request", ciaddr=ADDR))
    assert p is not None and opts(p)["message-type"] == 5
    assert (p.dst, p[IP].dst, p[BOOTP].ciaddr, p[BOOTP].yiaddr) == (CLIENT, ADDR, ADDR, ADDR)
    nak = answer(client("request", ciaddr="10.0.1.77"))
    assert nak is not None and opts(nak)["message-type"] == 6


def test_release_decline_and_unknown_clients_get_nothing() -> None:
    assert dhcp.decide(client("release", ciaddr=ADDR), LEASE) is None
    assert dhcp.decide(client("decline", requested_addr=ADDR), LEASE) is None
    assert dhcp.decide(client("discover"), None) is None


def test_inform_gets_configuration_but_no_address_or_lease() -> None:
    p = answer(client("inform", ciaddr=ADDR))
    assert p is not None
    o = opts(p)
    assert o["message-type"] == 5 and "lease_time" not in o and o["router"] == GW
    assert p[BOOTP].yiaddr == "0.0.0.0" and p[IP].dst == ADDR


def test_host_routes_go_in_option_121_with_the_default_route() -> None:
    routes = (
        (ip4_int("192.168.0.0"), 16, ip4_int("10.0.1.5")),
        (ip4_int("10.9.9.128"), 25, ip4_int(GW)),
    )
    p = answer(client("discover"), LEASE._replace(routes=routes))
    assert p is not None
    raw = next(
        o for o in p[DHCP].options if isinstance(o, tuple) and o[0] == "classless_static_routes"
    )
    assert list(raw[1]) == [
        "0.0.0.0/0:10.0.1.1",
        "192.168.0.0/16:10.0.1.5",
        "10.9.9.128/25:10.0.1.1",
    ]
    assert "router" not in opts(p)


def test_a_long_option_is_split_and_read_back_whole() -> None:
    many = tuple(ip4_int(f"10.1.{i}.1") for i in range(70))  # 280 bytes
    out = dhcp.build(client("discover"), dhcp.OFFER, LEASE._replace(dns=many))
    # the reply parsed as if a request: flip op to read the options back
    again = dhcp.parse(b"\x01" + out[1:])
    assert again.options[dhcp.OPT_DNS] == b"".join(a.to_bytes(4, "big") for a in many)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x01" * 100, "message"),
        (bytes(BOOTP(op=2) / DHCP(options=[("message-type", "discover"), "end"])), "op"),
        (bytes(BOOTP(htype=6) / DHCP(options=[("message-type", "discover"), "end"])), "htype"),
        (bytes(BOOTP()) + b"\x00" * 4, "magic"),
        (bytes(BOOTP() / DHCP(options=["end"])), "option 53"),
        (bytes(BOOTP() / DHCP(options=[("message-type", 9), "end"])), "option 53"),
        (
            bytes(BOOTP() / DHCP(options=[("message-type", "discover")])) + b"\x32\x09\x01",
            "option 50",
        ),
        (
            bytes(BOOTP() / DHCP(options=[("message-type", "request"), ("server_id", "1.2.3.4")]))[
                :-6
            ]
            + b"\x36\x02\x01\x02\xff",
            "option 54",
        ),
    ],
)
def test_malformed_messages_are_refused_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(dhcp.DhcpError, match=field):
        dhcp.parse(data)
