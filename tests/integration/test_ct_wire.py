"""ct, nat and ct_clear flows travel as `ovs-ofctl` sends them, byte for byte.

`ovs-ofctl -O OpenFlow13 add-flow` talks to a real vnet switch through a
recording proxy: each FLOW_MOD it sent must equal vnet's own encoding of the
same flow text, the switch must take it (no ERROR), and `dump-flows` must read
it back as written.  The switch has no ports, so no root is needed.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.ofp.convert import flow_mod_to_ofp
from vnet.pipeline import parse_flow
from vnet.testing.switchproc import portless_switch

from .test_interop import free_port, ofctl

pytestmark = pytest.mark.integration

FLOWS = [
    "priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=5)",
    "table=1,priority=10,ct_state=+new+trk,ip,actions=ct(commit,zone=NXM_NX_REG6[0..15],exec(set_field:0x1->ct_mark)),output:2",
    "table=1,priority=10,ct_state=+est+trk,ct_mark=0x1,ip,actions=output:1",
    "table=1,priority=5,ct_state=+inv+trk,ip,actions=drop",
    "table=2,priority=10,ct_state=+est+trk,ct_label=0x5,ip,ct_nw_src=10.0.0.1,ct_nw_proto=6,ct_tp_dst=80,actions=ct_clear,output:1",
    "table=2,priority=9,ct_state=+new+trk,ipv6,ct_ipv6_dst=fd00::1,actions=ct(commit,exec(set_field:0x3->ct_label))",
    "table=3,priority=10,ip,actions=ct(commit,nat(src=10.0.0.1-10.0.0.5:1000-2000,random))",
    "table=3,priority=9,ipv6,actions=ct(commit,nat(dst=[fd00::1]-[fd00::9]:80-90))",
    "table=3,priority=8,ip,actions=ct(table=4,nat)",
    "table=3,priority=7,tcp,actions=ct(commit,alg=ftp)",
]
# encoded and decoded alike, but refused by this switch until it has a TFTP
# helper: an OpenFlow error, nothing installed
REFUSED = [
    "table=3,priority=6,udp,actions=ct(commit,alg=tftp)",
]


class Recorder:
    """A TCP proxy to the switch that keeps every FLOW_MOD the client sent."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.target = f"tcp:127.0.0.1:{self.port}"
        self.flow_mods: list[bytes] = []
        self.errors: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(
                target=self._pump, args=(c, up, self.flow_mods, 14), daemon=True
            ).start()
            threading.Thread(target=self._pump, args=(up, c, self.errors, 1), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket, keep: list[bytes], mtype: int) -> None:
        buf = b""
        try:
            while data := a.recv(65536):
                buf += data
                while len(buf) >= 8:
                    n = struct.unpack_from("!H", buf, 2)[0]
                    if len(buf) < n:
                        break
                    if buf[1] == mtype:
                        keep.append(buf[:n])
                    buf = buf[n:]
                b.sendall(data)  # recorded first: the other end's answer comes after
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.srv.close()


@contextlib.contextmanager
def listening_switch(rundir: Path, prefix: str) -> Iterator[tuple[int, str, dict[str, str]]]:
    """A portless, fail-secure vnet switch taking OpenFlow on loopback until the block
    ends: its OpenFlow port, its name and the environment that reaches it."""
    port = free_port()
    name = prefix + uuid.uuid4().hex[:8]
    listen = ("--listen", f"ptcp:{port}:127.0.0.1", "--fail-mode", "secure")
    with portless_switch(rundir, name, *listen) as env:
        yield port, name, env


@contextlib.contextmanager
def recording(port: int, flows: list[str]) -> Iterator[Recorder]:
    """`ovs-ofctl add-flow` of each of `flows` through a Recorder in front of the switch
    at `port` (each one taken); the block goes on with it (its `target`), then closes it."""
    rec = Recorder(port)
    try:
        for text in flows:
            r = ofctl(rec.target, "add-flow", text)
            assert r.returncode == 0, (text, r.stderr)
        yield rec
    finally:
        rec.close()


def assert_sent_as_vnet_encodes(texts: list[str], sent: list[bytes]) -> None:
    """Each FLOW_MOD `ovs-ofctl` sent is vnet's own encoding of its text, byte for byte."""
    assert len(sent) == len(texts)
    for text, msg in zip(texts, sent, strict=True):
        ours = vnet_wire(text)
        assert ours[8:] == msg[8:], (text, msg.hex(), ours.hex())  # all but the xid


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[int]:
    with listening_switch(tmp_path, "w") as (port, _, _):
        yield port


def vnet_wire(text: str) -> bytes:
    msg = flow_mod_to_ofp(parse_flow(text).flow)
    msg.serialize()
    return bytes(msg.buf)


def test_ct_flows_encode_as_ovs_ofctl_sends_them(switch: int) -> None:
    with recording(switch, FLOWS) as rec:
        assert rec.errors == []
        for text in REFUSED:
            r = ofctl(rec.target, "add-flow", text)
            assert r.returncode != 0 and "OFPBAC_BAD_TYPE" in r.stderr, (text, r.stderr)
        assert len(rec.errors) == len(REFUSED)
        assert_sent_as_vnet_encodes(FLOWS + REFUSED, rec.flow_mods)
        dumped = ofctl(rec.target, "dump-flows").stdout
    for text in FLOWS:
        actions = text.split("actions=", 1)[1]
        assert f"actions={actions}" in dumped, (actions, dumped)
    assert "alg=tftp" not in dumped
