"""Network namespaces and processes for tests, the lab and benchmarks -- cleaned up always.

Every name carries a unique suffix (pid and a counter), so parallel test
workers and leftover runs never collide; everything made is recorded and
removed in reverse order on exit, also when the body raised.  Processes are
stopped by the PID this code started, never by name.  Traffic is meant only
for addresses inside the namespaces made here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["Lab", "run"]

_counter = itertools.count()


def run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def _quiet(*cmd: str) -> None:
    run(*cmd, check=False)


class Lab:
    """`with Lab() as lab:` namespaces (`lab.ns`), veth pairs (`lab.veth`), processes."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 100000}{next(_counter)}"
        self._undo: list[Callable[[], None]] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def name(self, base: str) -> str:
        n = f"{base}{self.tag}"
        assert len(n) <= 15, n
        return n

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def ns(self, base: str) -> str:
        n = self.name(base)
        run("ip", "netns", "add", n)
        self._undo.append(lambda: _quiet("ip", "netns", "del", n))
        run("ip", "-n", n, "link", "set", "lo", "up")
        return n

    def veth(
        self, base: str, ns: str | None = None, addrs: Sequence[str] = (), mac: str | None = None
    ) -> tuple[str, str]:
        """A veth pair: (host end `base`+tag, peer `p`+base+tag moved into `ns` with addrs)."""
        a, b = self.name(base), self.name("p" + base)
        run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self._undo.append(lambda: _quiet("ip", "link", "del", a))
        run("ip", "link", "set", a, "up")
        pre: tuple[str, ...] = ("ip",)
        if ns is not None:
            run("ip", "link", "set", b, "netns", ns)
            pre = ("ip", "-n", ns)
        if mac:
            run(*pre, "link", "set", b, "address", mac)
        for addr in addrs:
            run(*pre, "addr", "add", addr, "dev", b)
        run(*pre, "link", "set", b, "up")
        return a, b

    def exec(
        self, ns: str, *cmd: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    def spawn(
        self,
        *cmd: str,
        ns: str | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        full = ("ip", "netns", "exec", ns, *cmd) if ns else cmd
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        p = subprocess.Popen(
            full,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append(p)

        def stop() -> None:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            if log:
                out.close()  # type: ignore[union-attr]

        self._undo.append(stop)
        return p

    def defer(self, fn: Callable[[], None]) -> None:
        self._undo.append(fn)


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
