"""`vnet lab` on this machine: a topology file made real with namespaces.

`up` starts a controller (embedded SQLite store in the lab's directory);
makes every chassis a network namespace of its own (a hypervisor), cabled
by a veth to a bridge in the lab's underlay namespace with its underlay
(VTEP) address; runs one vnet switch per chassis inside its namespace, told
to dial the controller's unix socket, with a tunnel port per encapsulation
the chassis use; and gives each port a network namespace as its workload: a
veth pair whose switch end, in the chassis' namespace, is named after the
port (`Port.iface`, so the controller finds it by name) and whose other end,
`eth0` in the workload's namespace, carries the port's MAC, addresses and
MTU (the network's: what the tunnels carry), and on a subnet of a router a
default route via the subnet's gateway, per family (`addressing`).  Each
workload's hosts file (`/etc/netns/NS/hosts`, which `ip netns exec` puts
over /etc/hosts) names its tenant's ports, so `ping db1` works.  With
`addressing: dhcp` in the file the workloads get no address from the lab:
once the ports are up each runs busybox's udhcpc (a lab process, stopped by
PID on `down`) and takes IPv6 by SLAAC (`addressing` says more).  It then
applies the file and waits until every port is up (its flows are installed).
`migrate` moves a workload's cable to another chassis (see there).

A file with external networks gets the physical network's edge: a
*physical switch*, an Open vSwitch bridge (`br-phys`, standalone, NORMAL)
in a namespace of the lab's own -- this kernel has neither 8021q nor a
VLAN-filtering bridge, and the physical network must carry VLAN tags --
with each chassis' physnet uplink (`physnets`, `up-<physnet>` unless the
file names them, `topology`) cabled to it by a veth as a trunk; and an
`outside` namespace for the upstream router (`vnet lab exec outside --
CMD`): one interface per external network, an access port of the physical
switch on the network's VLAN, holding its subnets' gateway addresses,
forwarding on, and the server's addresses on its loopback (the file's
`outside: {server: [...]}`, else 203.0.113.10/24 and 2001:db8:ffff::10/64).
Workloads on an external network get their default routes via those
gateways.  A vnet switch is given its uplinks with `--port`; an Open
vSwitch chassis gets them plugged by the controller.  Chassis with a BGP
configuration (`bgp`) get FRR speakers and `outside` FRR as their upstream
router (`lab.bgp`); a file without one runs no FRR.

A chassis with `switch: ovs` gets an Open vSwitch of its own, from Debian's
openvswitch-switch: an ovsdb-server with a fresh database and an
ovs-vswitchd (userspace `netdev` datapath) in a private directory, the
daemon in the chassis' namespace (a netdev datapath owns a tap named
`ovs-netdev`, which must not meet another Open vSwitch's), the underlay
address on a `br-phy` bridge holding the underlay port (Open vSwitch's
userspace tunnelling sends through a bridge it owns).  The lab
only points the chassis at that database (`ovsdb: unix:...`); the
controller itself creates the bridge and plugs the ports over OVSDB, and
dials the bridge's OpenFlow management socket (`endpoint: unix:.../br-int.mgmt`;
a path reaches across network namespaces where 127.0.0.1 does not, and
Open vSwitch dials unix sockets only inside its own run directory).  Once
the ports are up, each Open vSwitch chassis is told the other chassis'
underlay MACs (`tnl/neigh/set`), so its tunnel neighbour table is filled
before a workload's first packet (which it would otherwise drop while it
asks).

Everything made is recorded in `state.json` as soon as it exists, so `down`
removes it all -- also after a crash half way.  Processes are stopped by the
PID recorded, and only if that PID still runs a command naming this lab's
directory (a PID reused by something else is left alone).  Names carry a
per-lab tag, so two labs never collide.

Commands find a lab without being told where: `find_lab` looks in the
default directory (RUNDIR/lab) and in VNET_RUNDIR itself when that is a
lab's directory (the setting the lab gives its own switches).  A lab's
switches keep their sockets in its directory, so `switch_sockets` names
them for `vnet ofctl` and `vnet switch show`, whatever namespace the
switch runs in.  The fields a lab fills in for a file (a chassis'
underlay address, an Open vSwitch chassis' database and endpoint) are
recorded, so applying the same file to the lab later changes nothing
(`as_applied`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..client import ApiError, Client
from ..datapath.control import request, rundir
from ..datapath.switch import SwitchError
from ..model.objects import iface_name, tunnel_iface
from .addressing import (
    Address,
    addresses,
    default_routes,
    hosts_file,
    mode,
    routed_subnets,
    udhcpc_script,
)
from .bgp import bgp_up, wants_bgp
from .topology import (
    TopologyError,
    model_part,
    physnets_of,
    with_outside,
    with_physnets,
    with_underlay,
)

__all__ = ["Lab", "LabError", "default_dir", "find_lab", "running_labs"]

UNDERLAY_BRIDGE = "br-underlay"
UNDERLAY_IFACE = "underlay0"
OUTSIDE = "outside"  # `vnet lab exec outside -- CMD`: the upstream router's namespace
PHYS_BRIDGE = "br-phys"  # the physical switch, when the file has external networks
NETNS_ETC = Path("/etc/netns")  # `ip netns exec NS` binds /etc/netns/NS/* over /etc/*


class LabError(RuntimeError):
    pass


LOGS = ("controller.log", "sim.log", "switch-*.log", "ovsdb-*.log", "frr-*.log", "bgp-*.log")


def default_dir() -> Path:
    return Path(rundir()) / "lab"


def running_labs() -> list[Lab]:
    """The labs that are up where a command looks without `--dir`."""
    dirs = [default_dir()]
    env = os.environ.get("VNET_RUNDIR")
    if env:
        dirs.append(Path(env))  # a lab's switches run with VNET_RUNDIR=<the lab's directory>
    labs: list[Lab] = []
    for d in dict.fromkeys(p.resolve() for p in dirs):
        if (d / "state.json").exists():
            labs.append(Lab(d))
    return labs


def find_lab(directory: Path | None = None) -> Lab:
    """The lab in `directory`; without one, the first lab that is up, else the default's."""
    if directory is not None:
        return Lab(directory)
    labs = running_labs()
    return labs[0] if labs else Lab(default_dir())


def _run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}")
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    def __init__(self, directory: Path | None = None) -> None:
        self.dir = Path(directory or default_dir())
        self.state_file = self.dir / "state.json"
        self.state: dict[str, Any] = {}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())

    # -- state ----------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _record(self, key: str, value: Any) -> None:
        self.state.setdefault(key, []).append(value)
        self._save()

    @property
    def api(self) -> str:
        return str(self.state["api"])

    @property
    def token(self) -> str | None:
        """The API's token, for an API that asks for one (kept in the lab's state)."""
        t = self.state.get("token")
        return str(t) if t else None

    def client(self) -> Client:
        return Client(self.api, token=self.token)

    # -- up -------------------------------------------------------------------------------
    def up(
        self,
        doc: dict[str, Any],
        timeout: float = 60.0,
        switch: str | None = None,
        sim: bool = False,
    ) -> None:
        """Realise a topology; `switch` (vnet or ovs) overrides every chassis' switch kind.

        With `sim` the topology runs simulated in one process of its own (no root).
        """
        if sim:
            if switch == "ovs":
                raise LabError("--sim simulates vnet switches; Open vSwitch needs a real lab")
            return self._up_sim(doc)
        if os.geteuid() != 0:
            raise LabError("the lab needs root for namespaces (or use --sim)")
        of_port = _free_port()
        api_port = self._begin(of=of_port)
        try:
            given = doc
            try:
                dhcp = mode(doc) == "dhcp"
            except ValueError as e:
                raise LabError(str(e)) from None
            self.state["addressing"] = "dhcp" if dhcp else "static"
            doc = self._with_underlay({k: v for k, v in doc.items() if k != "addressing"})
            doc = self._with_edge(doc)
            doc = self._with_ovs(doc, switch)
            self._record_filled(given, doc)
            for ch in doc.get("chassis") or []:
                if isinstance(ch, dict):
                    self._hypervisor(ch)
            self._physical(doc)
            self._spawn(
                "controller", sys.executable, "-m", "vnet", "controller", "run",
                "--db", str(self.dir / "vnet.db"), "--api", f"127.0.0.1:{api_port}",
                "--of-listen", f"ptcp:{of_port}:127.0.0.1",
                "--of-listen", f"punix:{self.dir / 'of.sock'}",
            )  # fmt: skip
            self._wait_api(20)
            with self.client() as c:
                c.apply(doc)
                ports = c.list("port")
                chassis = {ch["id"]: ch for ch in c.list("chassis")}
                nets = {n["id"]: n for n in c.list("network")}
                subnets = {s["id"]: s for s in c.list("subnet")}
                routers = c.list("router")
                routed = routed_subnets(routers)
            # an external subnet's gateway is the outside's (the upstream router)
            routed |= {i for i, s in subnets.items() if nets[s["network"]].get("external")}
            self._outside(nets, subnets)
            self._outside_routes(routers, subnets)
            if wants_bgp(list(chassis.values())):
                bgp_up(self, list(chassis.values()), nets, subnets, _run)
            for p in ports:
                if p.get("chassis") is None:
                    raise LabError(f"port {p['name']}: bound to no chassis")
                where = self.state["chassis_netns"].get(chassis[p["chassis"]]["name"])
                addrs = addresses(p, subnets, routed)
                self._workload(p, nets[p["network"]], addrs, where)
                self.state["ports"][p["name"]]["chassis"] = chassis[p["chassis"]]["name"]
                self._names(p, [q for q in ports if q["tenant"] == p["tenant"]])
            kinds = sorted({ch["encap"] for ch in chassis.values()})
            for ch in chassis.values():
                if ch["switch"] == "vnet":
                    mine = [p for p in ports if p.get("chassis") == ch["id"]]
                    self._switch(ch, mine, kinds)
            self._wait_up(timeout)
            self._learn_underlay(list(chassis.values()))
            if dhcp:
                for p in ports:
                    self._dhcp_client(p)
        except BaseException:
            self.down()
            raise

    def _begin(self, **extra: Any) -> int:
        """Refuse a second lab here, record a fresh state; returns the API's port."""
        if self.state_file.exists():
            raise LabError(f"a lab is already up in {self.dir} (vnet lab down first)")
        self.dir.mkdir(parents=True, exist_ok=True)
        for pattern in LOGS:  # an earlier lab's logs would read as this one's
            for old in self.dir.glob(pattern):
                old.unlink()
        api_port = _free_port()
        self.state = {"tag": secrets.token_hex(2), "api": f"http://127.0.0.1:{api_port}",
                      "dir": str(self.dir), "ports": {}, "procs": [], "netns": [], "links": [],
                      "dirs": [], "chassis_netns": {}, **extra}  # fmt: skip
        self._save()
        return api_port

    def _up_sim(self, doc: dict[str, Any]) -> None:
        api_port = self._begin(sim=True)
        try:
            try:
                # as the simulation fills it
                self._record_filled(doc, with_underlay(model_part(doc))[0])
            except TopologyError as e:
                raise LabError(str(e)) from None
            (self.dir / "topology.json").write_text(json.dumps(doc))
            self._spawn("sim", sys.executable, "-m", "vnet", "lab", "serve-sim",
                        "--dir", str(self.dir), "--api", f"127.0.0.1:{api_port}")  # fmt: skip
            self._wait_api(20, role="sim")
            with self.client() as c:
                for p in c.list("port"):
                    self.state["ports"][p["name"]] = {"id": p["id"]}
            self._save()
        except BaseException:
            self.down()
            raise

    @property
    def sim(self) -> bool:
        return bool(self.state.get("sim"))

    # -- the file, as the lab applied it ------------------------------------------------------
    def _record_filled(self, given: dict[str, Any], applied: dict[str, Any]) -> None:
        """Note what the lab put into the file's chassis: missing fields it filled in
        (`defaults`) and fields it overrode (`overrides`: `--switch`, Open vSwitch's
        database and endpoint), and the file's keys that are the lab's, not the model's."""
        mine = {str(c.get("name")): c for c in given.get("chassis") or [] if isinstance(c, dict)}
        defaults: dict[str, dict[str, Any]] = {}
        overrides: dict[str, dict[str, Any]] = {}
        for ch in applied.get("chassis") or []:
            if not isinstance(ch, dict):
                continue
            name, before = str(ch.get("name")), mine.get(str(ch.get("name")), {})
            for k, v in ch.items():
                if k not in before:
                    defaults.setdefault(name, {})[k] = v
                elif before[k] != v:
                    overrides.setdefault(name, {})[k] = v
        self.state["file"] = {
            "defaults": defaults,
            "overrides": overrides,
            "lab_keys": sorted(k for k in given if k not in applied),
        }
        self._save()

    def as_applied(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A model file as this lab applies it: the lab's keys out, what it filled in for
        each chassis in (unless the file says otherwise), what it overrides set."""
        filled = self.state.get("file")
        if not filled:
            return doc
        doc = {k: v for k, v in doc.items() if k not in filled["lab_keys"]}
        chassis = doc.get("chassis")
        if not isinstance(chassis, list):
            return doc
        out = []
        for ch in chassis:
            if isinstance(ch, dict):
                name = str(ch.get("name"))
                ch = {**filled["defaults"].get(name, {}), **ch, **filled["overrides"].get(name, {})}
            out.append(ch)
        return {**doc, "chassis": out}

    def switch_sockets(self, name: str) -> tuple[str, str | None] | None:
        """(OpenFlow management target, control socket or None) of the lab's switch `name`:
        a vnet switch's sockets, or an Open vSwitch chassis' bridge (no control socket)."""
        if not self.state:
            return None
        mgmt, ctl = self.dir / f"{name}.mgmt", self.dir / f"{name}.ctl"
        if mgmt.exists() or ctl.exists():
            return f"unix:{mgmt}", str(ctl)
        ovs = self.dir / f"ovs-{name}"
        bridges = sorted(ovs.glob("*.mgmt")) if ovs.is_dir() else []
        if bridges:
            return f"unix:{bridges[0]}", None
        return None

    def ping(self, port: str, addr: str, count: int = 3) -> dict[str, int]:
        """A ping from a simulated workload (`--sim` labs): {sent, received}."""
        if not self.state:
            raise LabError(f"no lab is up in {self.dir}")
        try:
            result: dict[str, int] = request(
                str(self.dir / "sim.sock"), "ping", port=port, addr=addr, count=count
            )
        except SwitchError as e:
            raise LabError(str(e)) from None
        except OSError as e:
            raise LabError(
                f"the simulated lab does not answer ({e}); see {self.dir}/sim.log"
            ) from None
        return result

    def _spawn(
        self,
        role: str,
        *cmd: str,
        env: dict[str, str] | None = None,
        netns: str | None = None,
    ) -> int:
        """Start a process of the lab (in `netns` if given) and record its PID and command."""
        log = open(self.dir / f"{role}.log", "ab")  # noqa: SIM115
        prefix = ["ip", "netns", "exec", netns] if netns else []
        p = subprocess.Popen(
            [*prefix, *cmd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "VNET_RUNDIR": str(self.dir), **(env or {})},
        )  # fmt: skip
        log.close()
        entry = {"role": role, "pid": p.pid, "cmd": list(cmd), "prefix": prefix, "env": env or {}}
        self._record("procs", entry)
        return p.pid

    # -- Open vSwitch chassis ---------------------------------------------------------------
    def _with_ovs(self, doc: dict[str, Any], switch: str | None) -> dict[str, Any]:
        """Start an Open vSwitch per `switch: ovs` chassis; the file, pointed at them."""
        if switch not in (None, "vnet", "ovs"):
            raise LabError(f"--switch {switch!r}: expected vnet or ovs")
        doc = dict(doc)
        out = []
        for ch in doc.get("chassis") or []:
            if not isinstance(ch, dict):
                out.append(ch)  # the controller names what is wrong with it
                continue
            ch = dict(ch)
            if switch is not None:
                ch["switch"] = switch
            if ch.get("switch") == "ovs":
                d = self._ovs(str(ch.get("name")))
                ch["ovsdb"] = f"unix:{d / 'db.sock'}"
                ch["endpoint"] = f"unix:{d / str(ch.get('bridge', 'br-int'))}.mgmt"
            out.append(ch)
        if out:
            doc["chassis"] = out
        return doc

    def _ovs(self, chassis: str, netns: str | None = None) -> Path:
        """ovsdb-server and ovs-vswitchd for one chassis (or the physical switch, in
        `netns`); returns their directory."""
        if shutil.which("ovs-vswitchd") is None:
            raise LabError("chassis switch ovs needs Open vSwitch (apt install openvswitch-switch)")
        d = self.dir / f"ovs-{chassis}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        self._record("dirs", str(d))
        ns = netns or self._chassis_netns(chassis)
        env = {k: str(d) for k in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR")}
        _run("ovsdb-tool", "create", str(d / "conf.db"), _ovs_schema())
        sock = f"unix:{d / 'db.sock'}"
        self._spawn(f"ovsdb-{chassis}", "ovsdb-server", str(d / "conf.db"),
                    f"--remote=p{sock}", f"--unixctl={d / 'ovsdb.ctl'}", env=env)  # fmt: skip
        end = time.monotonic() + 20
        while not (d / "db.sock").exists():
            if time.monotonic() > end:
                raise LabError(f"ovsdb-server did not start; see {self.dir}/ovsdb-{chassis}.log")
            time.sleep(0.05)
        _run("ovs-vsctl", f"--db={sock}", "--timeout=20", "--no-wait", "init")
        self._spawn(f"switch-{chassis}", "ovs-vswitchd", sock,
                    f"--unixctl={d / 'vswitchd.ctl'}", env=env, netns=ns)  # fmt: skip
        return d

    # -- hypervisors and the underlay --------------------------------------------------------
    def _chassis_netns(self, chassis: str) -> str:
        """The network namespace a chassis' switch runs in (its hypervisor)."""
        ns = self.state["chassis_netns"].get(chassis)
        if ns is None:
            ns = f"vnet-{self.state['tag']}-hv-{chassis}"
            _run("ip", "netns", "add", ns)
            self._record("netns", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            self.state["chassis_netns"][chassis] = ns
            self._save()
        return str(ns)

    def _with_underlay(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The underlay's namespace and bridge; the file with every chassis' address."""
        try:
            doc, net = with_underlay(doc)
        except TopologyError as e:
            raise LabError(str(e)) from None
        ns = f"vnet-{self.state['tag']}-underlay"
        _run("ip", "netns", "add", ns)
        self._record("netns", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "link", "add", UNDERLAY_BRIDGE, "type", "bridge")
        _run("ip", "-n", ns, "link", "set", UNDERLAY_BRIDGE, "up")
        self.state.update(underlay_netns=ns, underlay=str(net))
        self._save()
        return doc

    # -- the physical network's edge ---------------------------------------------------------
    def _with_edge(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The file with chassis physnets filled and the lab's `outside` key taken out."""
        try:
            doc, outside = with_outside(with_physnets(doc))
            nets = physnets_of(doc)
        except TopologyError as e:
            raise LabError(str(e)) from None
        if nets:
            self.state["outside_server"] = list(outside.server)
            self._save()
        return doc

    def _physical(self, doc: dict[str, Any]) -> None:
        """The physical switch (an Open vSwitch bridge, standalone, in a namespace of the
        lab's own: it understands VLAN tags, which this kernel's bridge does not), each
        chassis' uplinks cabled to it as trunks."""
        if not physnets_of(doc):
            return
        if shutil.which("ovs-vswitchd") is None:
            raise LabError("networks: an external network's physical switch needs Open vSwitch "
                           "(apt install openvswitch-switch)")  # fmt: skip
        tag = self.state["tag"]
        ns = f"vnet-{tag}-phys"
        _run("ip", "netns", "add", ns)
        self._record("netns", ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        self.state["phys_netns"] = ns
        self._save()
        d = self._ovs("phys", netns=ns)
        self.state["phys_db"] = f"unix:{d / 'db.sock'}"
        self._vsctl("--may-exist", "add-br", PHYS_BRIDGE, "--", "set", "bridge", PHYS_BRIDGE,
                    "datapath_type=netdev", "fail_mode=standalone")  # fmt: skip
        uplinks = self.state.setdefault("uplinks", {})
        n = 0
        for ch in doc.get("chassis") or []:
            if not isinstance(ch, dict):
                continue
            for iface in sorted(set((ch.get("physnets") or {}).values())):
                a, b = f"vp{tag}{n}", f"vp{tag}{n}h"
                n += 1
                _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
                self._record("links", a)
                _run("ip", "link", "set", a, "netns", ns)
                _run("ip", "-n", ns, "link", "set", a, "up")
                self._vsctl("--may-exist", "add-port", PHYS_BRIDGE, a)
                hv = self._chassis_netns(str(ch["name"]))
                _run("ip", "link", "set", b, "netns", hv)
                _run("ip", "-n", hv, "link", "set", b, "name", iface)
                _run("ip", "-n", hv, "link", "set", iface, "up")
                uplinks.setdefault(str(ch["name"]), []).append(iface)
                self._save()

    def _vsctl(self, *args: str) -> None:
        _run("ovs-vsctl", f"--db={self.state['phys_db']}", "--timeout=20", "--no-wait", *args)

    def _outside(self, nets: dict[str, Any], subnets: dict[str, Any]) -> None:
        """The upstream router: a namespace on each external network (an access port of
        the physical switch, on the network's VLAN) with its subnets' gateway addresses,
        forwarding on, and the server's addresses."""
        ext = sorted((n for n in nets.values() if n.get("external")), key=lambda n: n["name"])
        if not ext:
            return
        if shutil.which("ethtool") is None:
            raise LabError("external networks need ethtool for the outside (apt install ethtool)")
        tag = self.state["tag"]
        ns = f"vnet-{tag}-outside"
        _run("ip", "netns", "add", ns)
        self._record("netns", ns)
        self.state["outside_netns"] = ns
        self._save()
        o = ("ip", "-n", ns)
        _run(*o, "link", "set", "lo", "up")
        for a in self.state.get("outside_server", []):
            _run(*o, "addr", "add", a, "dev", "lo")
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}=1")
        for i, n in enumerate(ext):
            a, b = f"vo{tag}{i}", f"ext{i}"
            _run("ip", "link", "add", a, "type", "veth", "peer", "name", f"vo{tag}{i}h")
            self._record("links", a)
            _run("ip", "link", "set", a, "netns", self.state["phys_netns"])
            _run("ip", "-n", self.state["phys_netns"], "link", "set", a, "up")
            vlan = [f"tag={n['vlan']}"] if n.get("vlan") else []
            self._vsctl("--may-exist", "add-port", PHYS_BRIDGE, a, *vlan)
            _run("ip", "link", "set", f"vo{tag}{i}h", "netns", ns)
            _run(*o, "link", "set", f"vo{tag}{i}h", "name", b)
            if n.get("mtu"):
                _run(*o, "link", "set", b, "mtu", str(n["mtu"]))
            _run(*o, "link", "set", b, "up")
            # full checksums on the wire, as a real router's: the physical switch (Open
            # vSwitch's userspace datapath) gets no offload metadata from a veth, and a
            # partial checksum would not survive the routers' NAT
            _run("ip", "netns", "exec", ns, "ethtool", "-K", b, "tx", "off")
            for sub in subnets.values():
                if sub["network"] == n["id"] and sub.get("gateway"):
                    plen = ipaddress.ip_network(sub["cidr"]).prefixlen
                    v6 = ["nodad"] if ":" in sub["gateway"] else []
                    _run(*o, "addr", "add", f"{sub['gateway']}/{plen}", "dev", b, *v6)

    def _outside_routes(self, routers: list[dict[str, Any]], subnets: dict[str, Any]) -> None:
        """The upstream router's routes to what routers behind a gateway do not translate:
        their IPv6 subnets via the gateway's IPv6 address, their IPv4 ones via its IPv4
        address when `snat` is off (what a routing protocol would teach it)."""
        ns = self.state.get("outside_netns")
        if not ns:
            return
        for r in routers:
            g = r.get("gateway") or {}
            for itf in r.get("interfaces") or []:
                sub = subnets.get(itf["subnet"])
                if sub is None:
                    continue
                v6 = ":" in sub["cidr"]
                via = g.get("ip6") if v6 else (None if g.get("snat", True) else g.get("ip"))
                if via:
                    fam = ["-6"] if v6 else []
                    _run("ip", "-n", ns, *fam, "route", "replace", sub["cidr"], "via", via)

    def _hypervisor(self, ch: dict[str, Any]) -> None:
        """A chassis' namespace, cabled to the underlay bridge with its VTEP address.

        An Open vSwitch chassis' address goes on a bridge of its own (`br-phy`)
        holding the underlay port: its userspace datapath sends tunnel packets
        through a bridge it owns, as Open vSwitch's userspace tunnelling asks.
        """
        name = str(ch["name"])
        ns = self._chassis_netns(name)
        prefix = ipaddress.ip_network(self.state["underlay"]).prefixlen
        cables = self.state.setdefault("underlay_links", {})  # chassis -> its bridge port
        a, b = f"vu{self.state['tag']}{len(cables)}", f"vu{self.state['tag']}{len(cables)}h"
        _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self._record("links", a)
        cables[name] = a
        self._save()
        _run("ip", "link", "set", a, "netns", self.state["underlay_netns"])
        u = ("ip", "-n", self.state["underlay_netns"])
        _run(*u, "link", "set", a, "master", UNDERLAY_BRIDGE, "up")
        _run("ip", "link", "set", b, "netns", ns)
        h = ("ip", "-n", ns)
        _run(*h, "link", "set", b, "name", UNDERLAY_IFACE)
        _run(*h, "link", "set", UNDERLAY_IFACE, "up")
        addr = f"{ch['underlay']}/{prefix}"
        if ch.get("switch") != "ovs":
            _run(*h, "addr", "add", addr, "dev", UNDERLAY_IFACE)
            return
        d = self.dir / f"ovs-{name}"
        _run("ovs-vsctl", f"--db=unix:{d / 'db.sock'}", "--timeout=20", "--", "--may-exist",
             "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
             "--", "--may-exist", "add-port", "br-phy", UNDERLAY_IFACE)  # fmt: skip
        _run(*h, "addr", "add", addr, "dev", "br-phy")
        _run(*h, "link", "set", "br-phy", "up")

    def _wait_api(self, timeout: float, role: str = "controller") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with self.client() as c:
                    c.status()
                return
            except ApiError:
                time.sleep(0.1)
        raise LabError(f"the {role} did not answer; see {self.dir / (role + '.log')}")

    def _workload(
        self,
        port: dict[str, Any],
        net: dict[str, Any],
        addrs: list[Address],
        switch_netns: str | None = None,
    ) -> None:
        """A namespace cabled to the switch: the port's MAC, addresses and default routes."""
        ns = f"vnet-{self.state['tag']}-{port['name']}"
        host, peer = port_iface(port), f"vw{self.state['tag']}{len(self.state['links'])}"
        _run("ip", "netns", "add", ns)
        self._record("netns", ns)
        _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        self._record("links", host)
        _run("ip", "link", "set", peer, "netns", ns)
        n = ("ip", "-n", ns)
        _run(*n, "link", "set", "lo", "up")
        _run(*n, "link", "set", peer, "name", "eth0")
        _run(*n, "link", "set", "eth0", "address", port["mac"], "mtu", str(net["mtu"]))
        h: tuple[str, ...] = ("ip",)
        if switch_netns is not None:  # the switch end joins its Open vSwitch's namespace
            _run("ip", "link", "set", host, "netns", switch_netns)
            h = ("ip", "-n", switch_netns)
        # the switch's end is a wire, not a host: no IPv6 link-local address, so the
        # chassis' own stack never talks to the workload behind the switch's back
        _run(*h, "link", "set", host, "addrgenmode", "none")
        _run(*h, "link", "set", host, "mtu", str(net["mtu"]), "up")
        dhcp = self.state.get("addressing") == "dhcp"
        if dhcp:  # no address: udhcpc asks (`_dhcp_client`), IPv6 by SLAAC from the RAs
            for k, v in (("accept_ra", "2"), ("autoconf", "1"), ("accept_dad", "0")):
                _run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.eth0.{k}={v}")
        for a in [] if dhcp else addrs:
            extra = ("nodad",) if a.version == 6 else ()
            _run(*n, "addr", "add", f"{a.ip}/{a.prefix}", "dev", "eth0", *extra)
        _run(*n, "link", "set", "eth0", "up")
        # after the link is up: the gateway is on the subnet's prefix route, which
        # IPv6 adds only on an interface that is up
        for version, gw in sorted(default_routes([] if dhcp else addrs).items()):
            _run(*n, f"-{version}", "route", "add", "default", "via", gw, "dev", "eth0")
        self.state["ports"][port["name"]] = {"netns": ns, "iface": host, "id": port["id"]}
        self._save()

    def _dhcp_client(self, port: dict[str, Any]) -> None:
        """busybox udhcpc in the workload's namespace, a process of the lab; its event
        script writes the DNS servers to the workload's own resolv.conf."""
        if shutil.which("busybox") is None:
            raise LabError("addressing: dhcp needs busybox's udhcpc (apt install busybox)")
        ns = self.state["ports"][port["name"]]["netns"]
        script = self.dir / f"udhcpc-{port['name']}.sh"
        script.write_text(udhcpc_script(str(NETNS_ETC / ns / "resolv.conf")))
        script.chmod(0o755)
        self._spawn(f"dhcp-{port['name']}", "busybox", "udhcpc", "-f", "-i", "eth0",
                    "-s", str(script), "-t", "20", "-T", "1", "-A", "1", netns=ns)  # fmt: skip

    def _names(self, port: dict[str, Any], tenant_ports: list[dict[str, Any]]) -> None:
        """The workload's hosts file (its tenant's ports by name), where `ip netns exec`
        puts it over /etc/hosts for commands in the namespace: `ping db1`."""
        ns = self.state["ports"][port["name"]]["netns"]
        if not NETNS_ETC.exists():
            NETNS_ETC.mkdir(parents=True)
            self.state["made_netns_etc"] = True
        d = NETNS_ETC / ns
        d.mkdir(exist_ok=True)
        self._record("dirs", str(d))
        (d / "hosts").write_text(hosts_file(tenant_ports))

    def _switch(self, ch: dict[str, Any], ports: list[dict[str, Any]], kinds: list[str]) -> None:
        """A vnet switch in the chassis' namespace: its workloads' ports and a tunnel port
        per encapsulation the lab's chassis use (a chassis sends in the receiver's)."""
        cmd = [sys.executable, "-m", "vnet", "switch", "run", "--name", ch["name"], "--no-internal",
               "--fail-mode", "secure", "--controller", f"unix:{self.dir / 'of.sock'}"]  # fmt: skip
        for p in ports:
            cmd += ["--port", f"{port_iface(p)},port_security=false"]
        for kind in kinds:
            cmd += ["--port", f"{tunnel_iface(kind)},kind={kind},local_ip={ch['underlay']}"]
        for uplink in sorted(set((ch.get("physnets") or {}).values())):
            if uplink in self.state.get("uplinks", {}).get(ch["name"], []):
                cmd += ["--port", f"{uplink},port_security=false"]
        ns = self.state["chassis_netns"][ch["name"]]
        self._spawn(f"switch-{ch['name']}", *cmd, netns=ns)

    def _learn_underlay(self, chassis: list[dict[str, Any]]) -> None:
        """Each Open vSwitch chassis is told the other chassis' underlay MACs
        (`tnl/neigh/set`): Open vSwitch's userspace tunnelling drops the packet that
        finds a tunnel's next hop unknown (and asks by ARP), so without this a
        workload's first packet to each other chassis would be lost.  Pinging the
        peers is not enough: Open vSwitch learns only from ARP replies, and a kernel
        that learnt the peer from its request never asks."""
        macs = {str(ch["underlay"]): self._underlay_mac(ch) for ch in chassis if ch.get("underlay")}
        for ch in chassis:
            if ch["switch"] != "ovs":
                continue
            ctl = self.dir / f"ovs-{ch['name']}" / "vswitchd.ctl"
            for ip, mac in macs.items():
                if ip != ch.get("underlay"):
                    _run("ovs-appctl", "-t", str(ctl), "tnl/neigh/set", "br-phy", ip, mac)

    def _underlay_mac(self, ch: dict[str, Any]) -> str:
        """The MAC of the interface holding a chassis' underlay address."""
        ns = self.state["chassis_netns"][ch["name"]]
        links = json.loads(_run("ip", "-n", ns, "-j", "addr", "show").stdout)
        for link in links:
            if any(a.get("local") == ch["underlay"] for a in link.get("addr_info", [])):
                return str(link["address"])
        raise LabError(f"chassis {ch['name']}: no interface holds {ch['underlay']}")

    def _wait_up(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        down: list[str] = []
        while time.monotonic() < end:
            with self.client() as c:
                down = [p["name"] for p in c.list("port") if p["status"] != "up"]
            if not down:
                return
            time.sleep(0.2)
        raise LabError(
            f"ports still down after {timeout:g} s: {', '.join(down)}; logs in {self.dir}"
        )

    # -- use --------------------------------------------------------------------------------
    def netns(self, port: str) -> str:
        if not self.state:
            raise LabError(f"no lab is up in {self.dir}")
        if self.sim:
            raise LabError("a simulated lab has no namespaces: it runs only ping")
        entry = self.state["ports"].get(port)
        if entry is None and port == OUTSIDE and self.state.get("outside_netns"):
            return str(self.state["outside_netns"])
        if entry is None:
            names = ", ".join(sorted(self.state["ports"]))
            raise LabError(f"no port {port!r} in the lab (ports: {names})")
        return str(entry["netns"])

    def exec(
        self, port: str, cmd: list[str], timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns(port), *cmd],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def migrate(self, port: str, to: str) -> dict[str, Any]:
        """Move a workload to another chassis, as a live migration does.

        1. The new chassis' switch is told to expect the port (`wait=true`: down,
           holding frames for it, until its device arrives).
        2. The model changes (`POST /ports/{id}/migrate`), which answers once every
           switch has the new flows: frames for the workload now go to the new
           chassis, and the old one still passes what the workload sends.
        3. The cable moves: the switch's end of the workload's veth goes into the
           new hypervisor's namespace and comes up; the switch sends what it held,
           and the controller announces the port (gratuitous ARP, unsolicited NA).
        4. The old switch lets the port go.
        MAC, addresses and policy stay as they were.
        """
        self.netns(port)  # refuses a simulated lab and unknown ports
        entry = self.state["ports"][port]
        old, iface = entry.get("chassis"), entry["iface"]
        new_ns = self.state["chassis_netns"].get(to)
        if new_ns is None:
            names = ", ".join(sorted(self.state["chassis_netns"]))
            raise LabError(f"no chassis {to!r} in the lab (chassis: {names})")
        with self.client() as c:
            if old == to:
                return c.migrate(entry["id"], to)
            kinds = {ch["name"]: ch["switch"] for ch in c.list("chassis")}
            if kinds.get(to) == "vnet":
                self._switch_ctl(to, "add-port", spec=f"{iface},port_security=false,wait=true")
            moved = c.migrate(entry["id"], to)
        # no IPv6 address on the switch's end, as when it was made
        old_ns = self.state["chassis_netns"][old]
        _run("ip", "-n", old_ns, "link", "set", iface, "netns", new_ns)
        _run("ip", "-n", new_ns, "link", "set", iface, "addrgenmode", "none", "up")
        if kinds.get(old) == "vnet":
            self._switch_ctl(old, "del-port", name=iface)
        entry["chassis"] = to
        self._save()
        return moved

    def _switch_ctl(self, chassis: str, cmd: str, **args: Any) -> Any:
        try:
            return request(str(self.dir / f"{chassis}.ctl"), cmd, **args)
        except (SwitchError, OSError) as e:
            raise LabError(f"switch {chassis}: {cmd}: {e}") from None

    def restart(self, role: str) -> None:
        """Stop a process of the lab by PID and start it again with the same command."""
        if self.sim:
            raise LabError("a simulated lab is one process holding its model: down, then up")
        for entry in self.state.get("procs", []):
            if entry["role"] == role:
                if not _ours(entry):
                    raise LabError(f"{role} (pid {entry['pid']}) is not running")
                self._stop(entry)
                self.state["procs"].remove(entry)
                self._save()
                ns = entry["prefix"][3] if entry.get("prefix") else None
                self._spawn(role, *entry["cmd"], env=entry.get("env"), netns=ns)
                return
        raise LabError(f"no process {role!r} in the lab")

    # -- down -------------------------------------------------------------------------------
    def _stop(self, entry: dict[str, Any]) -> None:
        """SIGTERM, then SIGKILL, to a PID we started -- if it still runs our command."""
        pid = int(entry["pid"])
        if not _ours(entry):
            return  # gone, or the PID now belongs to something else
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _ours(entry):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def down(self) -> list[str]:
        """Remove everything the lab made; returns what was removed."""
        done: list[str] = []
        for entry in reversed(self.state.get("procs", [])):
            self._stop(entry)
            done.append(f"{entry['role']} (pid {entry['pid']})")
        for link in self.state.get("links", []):
            if _run("ip", "link", "del", link, check=False).returncode == 0:
                done.append(f"link {link}")
        for ns in self.state.get("netns", []):
            if _run("ip", "netns", "del", ns, check=False).returncode == 0:
                done.append(f"netns {ns}")
        for d in self.state.get("dirs", []):
            shutil.rmtree(d, ignore_errors=True)
        if self.state.get("made_netns_etc"):
            with contextlib.suppress(OSError):  # another lab's namespaces may still use it
                NETNS_ETC.rmdir()
        for f in ("state.json", "vnet.db", "vnet.db-wal", "vnet.db-shm", "of.sock",
                  "topology.json", "sim.sock", "state.tmp"):  # fmt: skip
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f).unlink()
        self.state = {}
        return done


def port_iface(port: dict[str, Any]) -> str:
    return iface_name(str(port["id"]))


def _ours(entry: dict[str, Any]) -> bool:
    """The PID still runs the command we started (before or after `ip netns exec` execs it)."""
    line = _cmdline(int(entry["pid"]))
    return line is not None and line in (
        entry.get("cmd"),
        [*entry.get("prefix", []), *entry["cmd"]],
    )


def _ovs_schema() -> str:
    for d in ("/usr/share/openvswitch", "/usr/local/share/openvswitch"):
        if os.path.exists(f"{d}/vswitch.ovsschema"):
            return f"{d}/vswitch.ovsschema"
    raise LabError("vswitch.ovsschema not found: is openvswitch-switch installed?")


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # a zombie
    return [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
