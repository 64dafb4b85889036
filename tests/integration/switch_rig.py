"""A vnet switch process between network namespaces, for integration tests.

Also the rig the conntrack tests share (firewall, NAT, fragments, FTP): hosts
in namespaces cabled to one switch under test -- vnet or Open vSwitch's
userspace datapath -- programmed with the same flow text by `vnet ofctl`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vnet.datapath.control import request
from vnet.testing.netns import Lab, wait_for
from vnet.testing.ovs import ovs_netdev_bridge

VNET = [sys.executable, "-m", "vnet"]

# echo server (`py(lab, ns, ECHO_SERVER, addr, port)`): says "listening", then names each
# connection's peer and answers each line it reads, for every connection, until killed
ECHO_SERVER = """
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4); print("listening", flush=True)
def serve(c):
    with c:
        while d := c.recv(100):
            c.sendall(d)
while True:
    c, peer = s.accept()
    print("peer %s %d" % peer, flush=True)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


class SwitchRig:
    def __init__(self, lab: Lab, rundir: Path, name: str = "sw") -> None:
        self.lab = lab
        self.rundir = rundir
        self.name = lab.name(name)
        self.env = {"VNET_RUNDIR": str(rundir)}

    def start(self, ports: Sequence[str], *extra: str, ns: str | None = None) -> None:
        """Run the switch (inside network namespace `ns` if given) and wait for it."""
        args = [*VNET, "switch", "run", "--name", self.name, "--no-internal", "-v"]
        for p in ports:
            args += ["--port", p]
        self.proc = self.lab.spawn(
            *args, *extra, ns=ns, log=self.rundir / f"{self.name}.log", env=self.env
        )
        ctl = self.rundir / f"{self.name}.ctl"
        try:
            wait_for(lambda: ctl.exists(), 20, "the switch's control socket")
        except TimeoutError:
            raise AssertionError(self.log()) from None

    def log(self) -> str:
        return (self.rundir / f"{self.name}.log").read_text(errors="replace")

    def ctl(self, cmd: str, **args: Any) -> Any:
        return request(str(self.rundir / f"{self.name}.ctl"), cmd, **args)

    def vnet(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(
            [*VNET, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
        )
        if check:
            assert p.returncode == 0, p.stderr + p.stdout
        return p.stdout + p.stderr

    def drops(self) -> dict[str, int]:
        return dict(self.ctl("show")["drops"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cabled_hosts(
    lab: Lab, prefix: str, hosts: Sequence[tuple[str, str]], mtu: int | None = None
) -> tuple[list[str], list[str], list[str]]:
    """A namespace per (address/24, MAC) in `hosts`, each on a veth pair: the
    namespaces, the switch-side ends (the switch's ports 1, 2, ...) and the hosts'
    ends.  Transmit checksum offload is off: Open vSwitch's userspace tracker gets
    no virtio-net header and refuses a partial checksum (both switches alike)."""
    namespaces, ports, peers = [], [], []
    for i, (addr, mac) in enumerate(hosts):
        ns = lab.ns(f"{prefix}{i}")
        end, peer = lab.veth(f"{prefix}{i}", ns, [f"{addr}/24"], mac=mac)
        lab.exec(ns, "ethtool", "-K", peer, "tx", "off")
        if mtu is not None:
            lab.exec(ns, "ip", "link", "set", peer, "mtu", str(mtu))
        namespaces.append(ns)
        ports.append(end)
        peers.append(peer)
    return namespaces, ports, peers


def programmed_switch(
    kind: str, lab: Lab, rundir: Path, ports: Sequence[str], flows: Sequence[str]
) -> tuple[str, SwitchRig | None]:
    """The switch under test on `ports`: vnet ("vnet": fail-secure, port security off,
    OpenFlow on loopback) or Open vSwitch's netdev bridge; `flows` added with `vnet
    ofctl add-flows`.  Its OpenFlow target, and vnet's rig."""
    sw = None
    if kind == "vnet":
        sw = SwitchRig(lab, rundir)
        port = _free_port()
        sw.start([p + ",port_security=false" for p in ports],
                 "--listen", f"ptcp:{port}:127.0.0.1", "--fail-mode", "secure")  # fmt: skip
        target = f"tcp:127.0.0.1:{port}"
    else:
        target = ovs_netdev_bridge(lab, rundir, ports)
    r = subprocess.run([*VNET, "ofctl", "add-flows", target, "-"], input="\n".join(flows),
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return target, sw


def py(lab: Lab, ns: str, code: str, *args: str) -> subprocess.Popen[str]:
    """Python `code` run in namespace `ns` (killed with the lab), its output piped."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)  # fmt: skip
    lab.defer(lambda: p.poll() is None and p.kill())
    return p
