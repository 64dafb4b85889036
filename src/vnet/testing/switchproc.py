"""A vnet switch process without ports (no root needed), stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["portless_switch"]


@contextlib.contextmanager
def portless_switch(rundir: Path, name: str, *args: str) -> Iterator[dict[str, str]]:
    """Run `vnet switch run --name NAME --no-internal ARGS` with its sockets in `rundir`
    until the block ends; the environment that reaches it (VNET_RUNDIR)."""
    env = {**os.environ, "VNET_RUNDIR": str(rundir)}
    cmd = [sys.executable, "-m", "vnet", "switch", "run", "--name", name, "--no-internal", *args]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (rundir / f"{name}.ctl").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the switch never opened its control socket"
            time.sleep(0.05)
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
