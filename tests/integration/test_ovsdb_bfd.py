"""OvsdbBridge's BFD ports against a real ovsdb-server: the rows written, the status read.

No ovs-vswitchd runs here, so this test writes `bfd_status` itself, as
ovs-vswitchd would, and watches it come back through the IDL's notifications.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable

import pytest

from vnet.controller.ovsdb import OvsdbBridge
from vnet.ofp.vnetext import BfdWant
from vnet.packet.addr import ip4_int

from .test_ovsdb import db, vsctl  # noqa: F401 (db: the fixture)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ovsdb-server") is None, reason="needs openvswitch-switch"),
]
A, B = ip4_int("192.0.2.1"), ip4_int("192.0.2.3")


def _until(what: Callable[[], bool], timeout: float, why: str) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, f"timed out: {why}"
        time.sleep(0.02)


def test_bfd_ports_are_plugged_reported_and_unplugged(db: str) -> None:  # noqa: F811
    got: list[dict[int, str]] = []
    lock = threading.Lock()

    def on_bfd(states: dict[int, str]) -> None:
        with lock:
            got.append(states)

    b = OvsdbBridge(db, "br-int", on_bfd=on_bfd)

    def ensure(bfd: list[BfdWant]) -> list[str]:
        return b.ensure(datapath_id="0000564e00000001", controllers=[],
                        datapath_type="netdev", ports={"vm1": "p1"},
                        tunnels={"geneve": "192.0.2.2"}, bfd=bfd)  # fmt: skip

    try:
        changes = ensure([BfdWant(A, "geneve"), BfdWant(B, "vxlan")])
        assert "port vbfd-c0000201 plugged" in changes and "port vbfd-c0000203 plugged" in changes
        name = "vbfd-c0000203"
        assert vsctl(db, "get", "interface", name, "type") == "vxlan"
        opts = vsctl(db, "get", "interface", name, "options")
        assert opts == '{key="0", remote_ip="192.0.2.3"}', opts
        bfd = vsctl(db, "get", "interface", name, "bfd")
        assert bfd == (
            '{check_tnl_key="true", enable="true", min_rx="100", min_tx="100", mult="3"}'
        ), bfd
        assert vsctl(db, "get", "interface", name, "external_ids:vnet-port") == '"bfd:192.0.2.3"'
        _until(lambda: ensure([BfdWant(A, "geneve"), BfdWant(B, "vxlan")]) == [], 5, "settled")
        assert got == [] or got[-1] == {}  # nothing said yet: nothing reported up or down
        # ovs-vswitchd's part: the sessions' status
        vsctl(db, "set", "interface", "vbfd-c0000201", "bfd_status:state=up",
              "bfd_status:forwarding=true")  # fmt: skip
        vsctl(db, "set", "interface", name, "bfd_status:state=init")
        _until(lambda: bool(got) and got[-1] == {A: "up", B: "init"}, 5, f"reported: {got}")
        vsctl(db, "set", "interface", name, "bfd_status:state=up")
        _until(lambda: got[-1] == {A: "up", B: "up"}, 5, f"reported: {got}")
        n = len(got)
        vsctl(db, "set", "interface", "vm1", "mtu_request=1400")  # not a BFD port's change
        time.sleep(0.3)
        assert len(got) == n, got
        # the session to B goes: its port goes, and the report says so
        assert ensure([BfdWant(A, "geneve")]) == ["port vbfd-c0000203 unplugged"]
        _until(lambda: got[-1] == {A: "up"}, 5, f"reported: {got}")
        assert "vbfd-c0000203" not in vsctl(db, "list-ports", "br-int").split()
        assert {"vm1", "vtep-geneve", "vbfd-c0000201"} <= set(
            vsctl(db, "list-ports", "br-int").split()
        )
    finally:
        b.close()
