"""OvsdbBridge against a real ovsdb-server (Debian's openvswitch-switch), no vswitchd needed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.controller.ovsdb import OWNER_KEY, OvsdbBridge, OvsdbError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ovsdb-server") is None, reason="needs openvswitch-switch"),
]
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    subprocess.run(["ovsdb-tool", "create", str(tmp_path / "conf.db"), SCHEMA], check=True)
    sock = f"unix:{tmp_path / 'db.sock'}"
    env = {**os.environ, "OVS_RUNDIR": str(tmp_path), "OVS_LOGDIR": str(tmp_path)}
    p = subprocess.Popen(
        ["ovsdb-server", str(tmp_path / "conf.db"), f"--remote=p{sock}",
         f"--unixctl={tmp_path / 'ctl'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        end = time.monotonic() + 10
        while not (tmp_path / "db.sock").exists():
            assert time.monotonic() < end, "ovsdb-server did not start"
            time.sleep(0.05)
        subprocess.run(["ovs-vsctl", f"--db={sock}", "--no-wait", "init"], check=True)
        yield sock
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)


def vsctl(db: str, *args: str) -> str:
    r = subprocess.run(["ovs-vsctl", f"--db={db}", "--no-wait", *args],
                       capture_output=True, text=True, check=True)  # fmt: skip
    return r.stdout.strip()


def ensure(
    b: OvsdbBridge, ports: dict[str, str], controllers: list[str] | None = None
) -> list[str]:
    return b.ensure(
        datapath_id="0000564e00000001",
        controllers=["tcp:127.0.0.1:6653"] if controllers is None else controllers,
        datapath_type="netdev",
        ports=ports,
    )


def test_bridge_made_as_the_model_says_then_nothing_written(db: str) -> None:
    b = OvsdbBridge(db, "br-t")
    try:
        first = ensure(b, {"vpa": "port-a", "vpb": "port-b"})
        assert "bridge br-t created" in first and "port vpa plugged" in first
        assert vsctl(db, "get", "bridge", "br-t", "datapath_type") == "netdev"
        assert vsctl(db, "get", "bridge", "br-t", "fail_mode") == "secure"
        assert vsctl(db, "get", "bridge", "br-t", "protocols") == "[OpenFlow13]"
        assert (
            vsctl(db, "get", "bridge", "br-t", "other_config:datapath-id") == '"0000564e00000001"'
        )
        assert vsctl(db, "get-controller", "br-t") == "tcp:127.0.0.1:6653"
        assert vsctl(db, "get", "interface", "vpa", f"external_ids:{OWNER_KEY}") == "port-a"
        # the same model again: nothing written (a rewritten controller would reconnect)
        time.sleep(0.2)
        assert ensure(b, {"vpa": "port-a", "vpb": "port-b"}) == []
    finally:
        b.close()


def test_only_vnet_ports_are_unplugged_and_drift_is_healed(db: str) -> None:
    b = OvsdbBridge(db, "br-t")
    try:
        ensure(b, {"vpa": "port-a", "vpb": "port-b"})
        vsctl(db, "add-port", "br-t", "theirs")  # a port someone else plugged
        vsctl(db, "set", "bridge", "br-t", "fail_mode=standalone")  # drift by hand
        time.sleep(0.2)
        changes = ensure(b, {"vpa": "port-a"})
        assert "port vpb unplugged" in changes and "bridge br-t fail_mode" in changes
        ports = vsctl(db, "list-ports", "br-t").split()
        assert sorted(ports) == ["theirs", "vpa"]
        assert vsctl(db, "get", "bridge", "br-t", "fail_mode") == "secure"
        # a chassis the controller dials has no controller of its own
        time.sleep(0.2)
        assert ensure(b, {"vpa": "port-a"}, controllers=[]) == ["bridge br-t controller "]
        assert vsctl(db, "get-controller", "br-t") == ""
    finally:
        b.close()


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    b = OvsdbBridge(f"unix:{tmp_path / 'nothing.sock'}", "br-t", timeout=2)
    with pytest.raises(OvsdbError, match=r"nothing\.sock"):
        ensure(b, {})
