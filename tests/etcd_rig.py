"""A throwaway etcd for the tests: one member or a cluster on loopback, no root needed.

Each member is Debian's `etcd` (etcd-server) with its data in a temporary
directory, on free loopback ports; `stop()` ends every member by its PID and
removes the data.  `kill(i)` and `restart(i)` take one member down and back
(same ports, same data) for the fault tests.

Where etcd is missing the tests that need it are skipped -- except under
`make` (`make test` installs etcd-server first, so a missing one there is a
failure, not a silent skip).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ETCD = "etcd"


def need_etcd() -> str:
    """The etcd binary; skips the test where it is absent (fails under `make`)."""
    path = shutil.which(ETCD)
    if path is None:
        if "MAKELEVEL" in os.environ:
            pytest.fail("etcd is not installed (scripts/ensure-deps.sh test installs etcd-server)")
        pytest.skip("needs etcd (Debian's etcd-server)")
    return path


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdCluster:
    def __init__(self, members: int = 1, binary: str = ETCD) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="vnet-etcd-"))
        ports = free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        self.names = [f"m{i}" for i in range(members)]
        self.cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        self.token = f"vnet-test-{os.getpid()}-{self.client_ports[0]}"
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * members

    @property
    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    @property
    def url(self) -> str:
        return f"etcd://{self.endpoints}"

    def _spawn(self, i: int) -> None:
        c, p = self.client_ports[i], self.peer_ports[i]
        log = open(self.dir / f"{self.names[i]}.log", "ab")  # noqa: SIM115 (the child holds it)
        self.procs[i] = subprocess.Popen(
            [
                self.binary,
                "--name", self.names[i],
                "--data-dir", str(self.dir / self.names[i]),
                "--listen-client-urls", f"http://127.0.0.1:{c}",
                "--advertise-client-urls", f"http://127.0.0.1:{c}",
                "--listen-peer-urls", f"http://127.0.0.1:{p}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                "--initial-cluster", self.cluster,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--logger", "zap",
                "--log-outputs", "stderr",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    def start(self) -> EtcdCluster:
        for i in range(len(self.names)):
            self._spawn(i)
        for i in range(len(self.names)):
            self.wait_healthy(i)
        return self

    def healthy(self, i: int) -> bool:
        try:
            url = f"http://127.0.0.1:{self.client_ports[i]}/health"
            with urllib.request.urlopen(url, timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def wait_healthy(self, i: int, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while not self.healthy(i):
            proc = self.procs[i]
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"etcd {self.names[i]} exited: {self.log(i)}")
            if time.monotonic() > end:
                raise RuntimeError(f"etcd {self.names[i]} not healthy: {self.log(i)}")
            time.sleep(0.05)

    def log(self, i: int) -> str:
        p = self.dir / f"{self.names[i]}.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def kill(self, i: int) -> None:
        """SIGKILL one member (its data stays, for `restart`)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self.procs[i] = None

    def restart(self, i: int) -> None:
        self.kill(i)
        self._spawn(i)
        if len(self.names) == 1:
            self.wait_healthy(i)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:  # a leader whose peers are gone may try to hand over for seconds
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            self.procs[i] = None
        shutil.rmtree(self.dir, ignore_errors=True)
