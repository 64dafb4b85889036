"""Reject on real namespaces: the controller answers a punted SYN and `connect()` is refused at once.

A hand-written `controller(reason=action)` flow (the cookie a compiled
reject rule would carry) on a vnet switch and on Open vSwitch's userspace
datapath, each connected to an in-process controller whose punt map names
that cookie.  B listens on the port, so without the answer the client would
either connect (had the SYN passed) or time out (the SYN dropped); with it,
the RST arrives and the client sees "connection refused" well within a
second.  The connection log holds the attempt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.netns import Lab, run
from vnet.testing.ovs import ovs_netdev_bridge
from vnet.testing.served import Served

from .switch_rig import VNET, SwitchRig
from .test_interop import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

A, B = "10.79.0.1", "10.79.0.2"
COOKIE = 0xC0FFEE
FLOWS = (
    f"table=0,priority=100,cookie={COOKIE:#x},tcp,nw_dst={B},tp_dst=5432,"
    "actions=controller(reason=action)",
    "table=0,priority=10,in_port=1,actions=output:2",
    "table=0,priority=10,in_port=2,actions=output:1",
)
LISTEN = "import socket,sys; s=socket.socket(); s.bind((sys.argv[1],5432)); s.listen(); "
LISTEN += "print('up', flush=True); s.accept()"
CONNECT = """
import socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], 5432), timeout=5).close()
    print("connected")
except OSError as e:
    print(type(e).__name__, round(time.monotonic() - t, 3))
"""


@dataclass(frozen=True)
class Punt:
    action: str
    rule: str
    log: bool
    direction: str
    port: str


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_reject_refuses_the_connection_at_once(lab: Lab, tmp_path: Path, kind: str) -> None:
    hosts, ends = [], []
    for i, addr in enumerate((A, B)):
        ns = lab.ns(f"r{i}")
        end, _ = lab.veth(f"r{i}", ns, [f"{addr}/24"])
        hosts.append(ns)
        ends.append(end)
    sock = tmp_path / "ctl.sock"
    ctl = Controller(SqliteStore(), [f"punix:{sock}"])
    ctl.punter.source = lambda _state: {COOKIE: Punt("reject", "test rule 1", True, "egress", "a")}
    with Served(ctl):
        if kind == "vnet":
            port = free_port()
            sw = SwitchRig(lab, tmp_path)
            sw.start([e + ",port_security=false" for e in ends], "--fail-mode", "secure",
                     "--listen", f"ptcp:{port}:127.0.0.1", "--controller", f"unix:{sock}")  # fmt: skip
            target = f"tcp:127.0.0.1:{port}"
        else:
            target = ovs_netdev_bridge(lab, tmp_path, ends)
            bridge = Path(target.removeprefix("unix:")).name.removesuffix(".mgmt")
            run("ovs-vsctl", f"--db=unix:{tmp_path}/db.sock", "set-controller", bridge,
                f"unix:{sock}")  # fmt: skip
        for flow in FLOWS:
            r = subprocess.run([*VNET, "ofctl", "add-flow", target, flow],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
            assert r.returncode == 0, (flow, r.stdout + r.stderr)
        deadline = time.monotonic() + 20
        while not ctl.sessions and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ctl.sessions, "the switch did not connect to the controller"
        srv = subprocess.Popen(["ip", "netns", "exec", hosts[1], sys.executable, "-c", LISTEN, B],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        lab.defer(lambda: srv.poll() is None and srv.kill())
        assert srv.stdout is not None and srv.stdout.readline().strip() == "up"
        got = lab.exec(hosts[0], sys.executable, "-c", CONNECT, B).stdout.split()
        assert got[0] == "ConnectionRefusedError" and float(got[1]) < 1.0, got
        (rec,) = ctl.punter.flow_log.query()[0]
        assert (rec.proto, rec.src, rec.dst, rec.dport) == ("tcp", A, B, 5432)
        assert (rec.verdict, rec.rule) == ("reject", "test rule 1")
        assert ctl.punter.counts["rejected"] == 1
