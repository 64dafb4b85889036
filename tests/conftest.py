from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.etcd_rig import EtcdCluster, need_etcd
from vnet.packet.addr import ip4_int, ip6_int, mac_int

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
IP_A = "10.0.0.1"
IP_B = "10.0.0.2"
IP6_A = "2001:db8::1"
IP6_B = "2001:db8::2"


@pytest.fixture
def addrs() -> dict[str, int]:
    return {
        "mac_a": mac_int(MAC_A),
        "mac_b": mac_int(MAC_B),
        "ip_a": ip4_int(IP_A),
        "ip_b": ip4_int(IP_B),
        "ip6_a": ip6_int(IP6_A),
        "ip6_b": ip6_int(IP6_B),
    }


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One throwaway etcd member on loopback for the session (skipped where etcd is absent)."""
    binary = need_etcd()
    cluster = EtcdCluster(1, binary).start()
    try:
        yield cluster
    finally:
        cluster.stop()
