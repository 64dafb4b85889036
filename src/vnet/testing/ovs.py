"""A private Open vSwitch (userspace `netdev` datapath) for tests and benchmarks.

Its own ovsdb-server and ovs-vswitchd, in a directory of their own, with the
vswitchd in a network namespace of its own (a netdev datapath owns a tap
named "ovs-netdev", which must not meet a system Open vSwitch's).  The ports
given are moved there and plugged with OpenFlow port numbers 1, 2, ... in
order.  Everything is started through the `Lab`, so it is stopped by PID and
removed when the lab closes, also on failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .netns import Lab, run, wait_for

__all__ = ["SCHEMA", "ovs_netdev_bridge"]

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def ovs_netdev_bridge(
    lab: Lab, directory: Path, ports: Sequence[str], fail_mode: str = "secure"
) -> str:
    """Start Open vSwitch with one netdev bridge holding `ports`; its OpenFlow target
    (`unix:.../BRIDGE.mgmt`, for `ovs-ofctl -O OpenFlow13`)."""
    if shutil.which("ovs-vswitchd") is None:
        raise RuntimeError("ovs-vswitchd missing: `make test` installs openvswitch-switch")
    d = str(directory)
    env = {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}
    db, sock = f"{d}/conf.db", f"unix:{d}/db.sock"
    run("ovsdb-tool", "create", db, SCHEMA)
    lab.spawn("ovsdb-server", db, f"--remote=p{sock}", f"--unixctl={d}/ovsdb.ctl",
              env=env, log=directory / "ovsdb.log")  # fmt: skip
    wait_for(lambda: os.path.exists(f"{d}/db.sock"), 10, "ovsdb-server")
    vsctl = ("ovs-vsctl", f"--db={sock}", "--timeout=20")
    run(*vsctl, "--no-wait", "init")
    ns = lab.ns("ovs")
    for p in ports:
        run("ip", "link", "set", p, "netns", ns)
        run("ip", "-n", ns, "link", "set", p, "up")
    lab.spawn("ovs-vswitchd", sock, f"--unixctl={d}/vswitchd.ctl", ns=ns, env=env,
              log=directory / "vswitchd.log")  # fmt: skip
    br = lab.name("ob")
    run(*vsctl, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
        "protocols=OpenFlow13")  # fmt: skip
    run(*vsctl, "set-fail-mode", br, fail_mode)
    for n, p in enumerate(ports, 1):
        run(*vsctl, "add-port", br, p, "--", "set", "interface", p, f"ofport_request={n}")
    mgmt = f"{d}/{br}.mgmt"
    wait_for(lambda: os.path.exists(mgmt), 10, "the bridge's management socket")
    return f"unix:{mgmt}"
