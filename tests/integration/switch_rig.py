"""A vnet switch process between network namespaces, for integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vnet.datapath.control import request
from vnet.testing.netns import Lab, wait_for

VNET = [sys.executable, "-m", "vnet"]


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
