"""`vnet lab` on this machine: a topology file made real with namespaces.

`up` starts a controller (embedded SQLite store in the lab's directory), one
vnet switch per chassis told to dial that controller, and one network
namespace per port as its workload: a veth pair whose switch end is named
after the port (`Port.iface`, so the controller finds it by name) and whose
other end, `eth0` in the namespace, carries the port's MAC, addresses and
MTU.  It then applies the file and waits until every port is up (its flows
are installed).

Everything made is recorded in `state.json` as soon as it exists, so `down`
removes it all -- also after a crash half way.  Processes are stopped by the
PID recorded, and only if that PID still runs a command naming this lab's
directory (a PID reused by something else is left alone).  Names carry a
per-lab tag, so two labs never collide.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..client import ApiError, Client
from ..datapath.control import rundir
from ..model.objects import iface_name

__all__ = ["LabError", "RealLab", "default_dir"]


class LabError(RuntimeError):
    pass


def default_dir() -> Path:
    return Path(rundir()) / "lab"


def _run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}")
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealLab:
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

    def client(self) -> Client:
        return Client(self.api)

    # -- up -------------------------------------------------------------------------------
    def up(self, doc: dict[str, Any], timeout: float = 60.0) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root for namespaces (or use --sim)")
        if self.state_file.exists():
            raise LabError(f"a lab is already up in {self.dir} (vnet lab down first)")
        self.dir.mkdir(parents=True, exist_ok=True)
        tag = secrets.token_hex(2)
        api_port, of_port = _free_port(), _free_port()
        self.state = {"tag": tag, "api": f"http://127.0.0.1:{api_port}", "of": of_port,
                      "dir": str(self.dir), "ports": {}, "procs": [], "netns": [], "links": []}  # fmt: skip
        self._save()
        try:
            self._spawn(
                "controller", sys.executable, "-m", "vnet", "controller", "run",
                "--db", str(self.dir / "vnet.db"), "--api", f"127.0.0.1:{api_port}",
                "--of-listen", f"ptcp:{of_port}:127.0.0.1",
            )  # fmt: skip
            self._wait_api(20)
            with self.client() as c:
                c.apply(doc)
                ports = c.list("port")
                chassis = {ch["id"]: ch for ch in c.list("chassis")}
                nets = {n["id"]: n for n in c.list("network")}
                subnets = {s["id"]: s for s in c.list("subnet")}
            for ch in chassis.values():
                if ch.get("switch", "vnet") != "vnet":
                    raise LabError(
                        f"chassis {ch['name']}: switch {ch['switch']!r} is not supported by the lab yet"
                    )
            for p in ports:
                if p.get("chassis") is None:
                    raise LabError(f"port {p['name']}: bound to no chassis")
                self._workload(p, nets[p["network"]], subnets)
            for ch in chassis.values():
                mine = [p for p in ports if p.get("chassis") == ch["id"]]
                self._switch(ch, mine)
            self._wait_up(timeout)
        except BaseException:
            self.down()
            raise

    def _spawn(self, role: str, *cmd: str, env: dict[str, str] | None = None) -> int:
        log = open(self.dir / f"{role}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "VNET_RUNDIR": str(self.dir), **(env or {})},
        )  # fmt: skip
        log.close()
        self._record("procs", {"role": role, "pid": p.pid, "cmd": list(cmd)})
        return p.pid

    def _wait_api(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with self.client() as c:
                    c.status()
                return
            except ApiError:
                time.sleep(0.1)
        raise LabError(f"the controller did not answer; see {self.dir / 'controller.log'}")

    def _workload(self, port: dict[str, Any], net: dict[str, Any], subnets: dict[str, Any]) -> None:
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
        _run("ip", "link", "set", host, "mtu", str(net["mtu"]), "up")
        for fip in port["fixed_ips"]:
            prefix = ipaddress.ip_network(subnets[fip["subnet"]]["cidr"]).prefixlen
            extra = ("nodad",) if ":" in fip["ip"] else ()
            _run(*n, "addr", "add", f"{fip['ip']}/{prefix}", "dev", "eth0", *extra)
        _run(*n, "link", "set", "eth0", "up")
        self.state["ports"][port["name"]] = {"netns": ns, "iface": host, "id": port["id"]}
        self._save()

    def _switch(self, ch: dict[str, Any], ports: list[dict[str, Any]]) -> None:
        cmd = [sys.executable, "-m", "vnet", "switch", "run", "--name", ch["name"], "--no-internal",
               "--fail-mode", "secure", "--controller", f"tcp:127.0.0.1:{self.state['of']}"]  # fmt: skip
        for p in ports:
            cmd += ["--port", f"{port_iface(p)},port_security=false"]
        self._spawn(f"switch-{ch['name']}", *cmd)

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
        entry = self.state["ports"].get(port)
        if entry is None:
            names = ", ".join(sorted(self.state["ports"]))
            raise LabError(f"no port {port!r} in the lab (ports: {names})")
        return str(entry["netns"])

    def exec(
        self, port: str, cmd: list[str], timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns(port), *cmd],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def restart(self, role: str) -> None:
        """Stop a process of the lab by PID and start it again with the same command."""
        for entry in self.state.get("procs", []):
            if entry["role"] == role:
                if not _ours(entry):
                    raise LabError(f"{role} (pid {entry['pid']}) is not running")
                self._stop(entry)
                self.state["procs"].remove(entry)
                self._save()
                self._spawn(role, *entry["cmd"])
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
        for f in ("state.json", "vnet.db", "vnet.db-wal", "vnet.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / f).unlink()
        self.state = {}
        return done


def port_iface(port: dict[str, Any]) -> str:
    return iface_name(str(port["id"]))


def _ours(entry: dict[str, Any]) -> bool:
    return _cmdline(int(entry["pid"])) == entry.get("cmd")


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # a zombie
    return [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
