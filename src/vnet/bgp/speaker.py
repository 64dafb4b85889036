"""A chassis' BGP speaker: FRR's daemons, and the loop that keeps their configuration
what the model says (`python -m vnet.bgp.speaker`).

FRR runs per network namespace without touching the host's /etc/frr or
/var/run/frr: each daemon is started in the namespace (`ip netns exec`) in the
foreground, with everything in a directory of the speaker's own (owned by the
`frr` user the daemons drop to) -- `--vty_socket DIR` (their vty sockets, which
`vtysh --vty_socket DIR` reaches from anywhere: a unix socket crosses
namespaces), `-z DIR/zserv.api` (zebra's socket, which the others dial),
`-i DIR/NAME.pid`, `--bfdctl DIR/bfdd.sock` (bfdd), `-P 0` (no TCP vty) and
`-f /dev/null` (they start empty; the configuration is applied through
vtysh).  The daemons are zebra, staticd (the advertised prefixes are static
routes), bgpd and bfdd (`DAEMONS`); whoever starts them keeps their PIDs and
stops them by PID.  Tested on Debian 12's frr 8.4.4 (`apt-get install frr`;
it needs no systemd and no /etc/frr/daemons change).

`Speaker` applies a configuration (`config.frr_conf`): the first time, the
whole file by `vtysh -f`; then, when only the static routes changed (what
floating IPs and subnets come and go do), just those lines (`ip route ...` /
`no ip route ...`, in one `vtysh -c 'configure terminal' -c ...` call: a few
tens of milliseconds); when the rest changed (the chassis' BGP
configuration), the whole file through FRR's `frr-reload.py --reload` (its
diff; about a second).  `run` is the loop: it reads the model from the
controller's API every `interval` seconds, computes the chassis'
advertisements (`config.advertisements`) and applies them when they differ
from what it applied.  A failed apply is retried on the next round.  The
upstream has a changed route 0.15-0.45 s after the vtysh call (measured on
veths); the lab's test holds the whole way, from the API call, to 2 s.  The
daemons' directory must be one the `frr` user reaches (they drop to it; FRR
refuses to run as root outside the `frrvty` group).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..model.objects import KINDS, Chassis
from ..model.state import State
from .config import advertisements, route_lines, structure

__all__ = [
    "DAEMONS",
    "FRR_BIN",
    "Speaker",
    "daemon_cmd",
    "load_state",
    "main",
    "ready",
    "run",
    "vtysh",
    "vtysh_file",
]

FRR_BIN = Path("/usr/lib/frr")
DAEMONS = ("zebra", "staticd", "bgpd", "bfdd")
RELOAD = FRR_BIN / "frr-reload.py"
log = logging.getLogger("vnet.bgp")


def daemon_cmd(daemon: str, d: Path, extra: Sequence[str] = ()) -> list[str]:
    """The command that runs FRR's `daemon` in the foreground with its sockets, PID
    file and log in `d` (run it inside the namespace)."""
    cmd = [str(FRR_BIN / daemon), "-u", "frr", "-g", "frr", "-P", "0", "--vty_socket", str(d),
           "-i", str(d / f"{daemon}.pid"), "-z", str(d / "zserv.api"), "-f", "/dev/null",
           "--log", "stdout"]  # fmt: skip
    if daemon == "bfdd":
        cmd += ["--bfdctl", str(d / "bfdd.sock")]
    return [*cmd, *extra]


def vtysh(d: Path, *commands: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """`vtysh` on the daemons whose sockets are in `d`, one `-c` per command."""
    args = [x for c in commands for x in ("-c", c)]
    return subprocess.run(
        ["vtysh", "--vty_socket", str(d), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def vtysh_file(d: Path, conf: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`vtysh -f conf`: a configuration file applied line by line to the running daemons."""
    return subprocess.run(
        ["vtysh", "--vty_socket", str(d), "-f", str(conf)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ready(d: Path) -> bool:
    """Every daemon answers on its vty socket."""
    if not all((d / f"{x}.vty").exists() for x in DAEMONS):
        return False
    return vtysh(d, "show version").returncode == 0


class ApplyError(RuntimeError):
    pass


class Speaker:
    """The configuration applied to one FRR (its sockets in `d`), and what changes it."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.structure: str | None = None  # what was applied of it
        self.routes: list[str] = []

    def apply(self, ch: Chassis, routes: list[str]) -> bool:
        """Make FRR's configuration `structure(ch)` and `routes`; True if anything changed."""
        want = structure(ch)
        if want == self.structure and routes == self.routes:
            return False
        conf = self.dir / "frr.conf"
        text = "\n".join([*routes, "!"]) + "\n" + want if routes else want
        conf.write_text(text)
        if self.structure is None:
            self._check(vtysh_file(self.dir, conf), "vtysh -f")
            # a fresh FRR started empty: what it has is what was applied
        elif want != self.structure:
            (self.dir / "vtysh.conf").touch()  # frr-reload.py runs vtysh with --config_dir
            r = subprocess.run(
                [sys.executable, str(RELOAD), "--reload", "--vty_socket", str(self.dir),
                 "--confdir", str(self.dir), "--rundir", str(self.dir), "--stdout",
                 "--log-level", "error", str(conf)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            self._check(r, "frr-reload.py")
        else:
            gone = [f"no {x}" for x in self.routes if x not in routes]
            new = [x for x in routes if x not in self.routes]
            self._check(vtysh(self.dir, "configure terminal", *gone, *new), "vtysh")
        self.structure, self.routes = want, list(routes)
        return True

    @staticmethod
    def _check(r: subprocess.CompletedProcess[str], what: str) -> None:
        # vtysh exits 0 after a command it refused: its refusals start with '%'
        bad = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("%")]
        if r.returncode != 0 or bad:
            raise ApplyError(f"{what}: {r.returncode}: {' / '.join(bad) or r.stderr.strip()}")


def load_state(client: Any) -> State:
    """The model as the controller's API has it (what a speaker needs of it: the chassis'
    BFD reports too, which say which gateway chassis is active)."""
    objs = []
    for kind in ("chassis", "network", "subnet", "port", "router", "floating_ip", "bfd_status"):
        cls = KINDS[kind]
        for d in client.list(kind):
            d.pop("status", None)  # a port's runtime status: not the model's
            objs.append(cls.model_validate(d))
    return State.of(objs)


def run(client: Any, chassis: str, d: Path, interval: float = 0.2, once: bool = False) -> None:
    """Keep FRR in `d` advertising what chassis `chassis` (a name or id) should."""
    sp = Speaker(d)
    while not ready(d):
        time.sleep(0.1)
    while True:
        try:
            st = load_state(client)
            ch = next((c for c in st.all("chassis") if chassis in (c.id, c.name)), None)
            if ch is not None and ch.bgp is not None:
                routes = route_lines(ch, advertisements(st, ch.id))
                if sp.apply(ch, routes):
                    log.info("applied %d routes: %s", len(routes), ", ".join(routes) or "none")
        except Exception as e:  # the API or FRR away for a moment: try again next round
            log.warning("%s", e)
        if once:
            return
        time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> None:
    from ..client import Client

    ap = argparse.ArgumentParser(prog="python -m vnet.bgp.speaker", description=__doc__)
    ap.add_argument("--chassis", required=True, help="the chassis (name or id)")
    ap.add_argument("--api", required=True, help="the controller's API, http://HOST:PORT")
    ap.add_argument("--token", default=None)
    ap.add_argument("--dir", required=True, type=Path, help="the FRR daemons' socket dir")
    ap.add_argument("--interval", type=float, default=0.2)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with Client(a.api, token=a.token) as c:
        run(c, a.chassis, a.dir, a.interval)


if __name__ == "__main__":
    main()
