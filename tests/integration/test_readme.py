"""The README's quick start, run as written: every shell block after `make`'s.

Each block runs as one bash script (`set -e`: any command that fails fails
the test) in a network and mount namespace of its own, with fresh /run/netns
and /run/vnet: the README's fixed names (namespaces `a` and `b`, ports 8080,
6653, 6634, the default lab directory) are private to the test, and nothing
of the machine's is seen or touched (/sys is remounted for the namespace, as
`ip netns exec` does).  No environment variable points vnet at
the lab: it must find it as a person's shell would.  The `make` block is
left out (it would rebuild the .venv without a network); test_cli_usability
holds `make demo` to its installer.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces"),
]
ROOT = Path(__file__).resolve().parents[2]


def quick_start_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_quick_start_has_the_blocks_this_test_runs() -> None:
    blocks = quick_start_blocks()
    assert blocks[0].lstrip().startswith("make demo")
    runnable = "".join(blocks[1:])
    for cmd in ("vnet lab up", "vnet ofctl dump-flows hv1", "vnet lab down", "vnet switch run"):
        assert cmd in runnable
    assert "export VNET_API" not in runnable and "VNET_RUNDIR" not in runnable


@pytest.mark.parametrize("index", [1, 2, 3], ids=["lab", "controller", "switch"])
def test_quick_start_block_runs_as_written(tmp_path: Path, index: int) -> None:
    script = quick_start_blocks()[index]
    for name in ("examples", ".venv"):  # the README's commands run from the source tree
        (tmp_path / name).symlink_to(ROOT / name)
    # a command that fails ends the block; its daemons and any lab it left end with it
    stop = "trap 'set +e; kill $(jobs -p) 2>/dev/null; vnet lab down >/dev/null 2>&1' EXIT\n"
    (tmp_path / "block.sh").write_text(stop + "set -euo pipefail\n" + script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNET_")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    # /sys remounted as `ip netns exec` does: the switch reads its links' state there
    private = (
        "set -e; mkdir -p /run/netns /run/vnet; mount -t sysfs sysfs /sys; "
        "mount -t tmpfs tmpfs /run/netns; mount -t tmpfs tmpfs /run/vnet; "
        "ip link set lo up; exec bash block.sh"
    )
    r = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", "bash", "-c", private],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, f"block {index} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
