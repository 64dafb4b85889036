"""`vnet lab up|exec|down|restart`: topologies of namespaces on this machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..client import ApiError
from ..lab.real import LabError, RealLab
from .common import fail, load_yaml, out

__all__ = ["lab_app"]

lab_app = typer.Typer(no_args_is_help=True, help="Build a topology of namespaces on this machine.")
DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Lab state directory [default: RUNDIR/lab]")
]


@lab_app.command("up")
def up(
    file: Annotated[Path, typer.Argument(help="Topology (model) file, YAML.")],
    directory: DirOpt = None,
    switch: Annotated[
        str | None,
        typer.Option("--switch", help="vnet or ovs for every chassis [default: as the file says]"),
    ] = None,
) -> None:
    """Start the controller, the switches and one namespace per port; wait until all are up."""
    if switch not in (None, "vnet", "ovs"):
        fail(f"--switch {switch!r}: expected vnet or ovs")
    doc = load_yaml(file, "topology file")
    lab = RealLab(directory)
    try:
        lab.up(doc, switch=switch)
    except ApiError as e:
        fail(f"{file}: {e}")
    except LabError as e:
        fail(str(e), 1)
    ports = sorted(lab.state["ports"])
    out.print(f"lab up: {len(ports)} port(s) ({', '.join(ports)}); API {lab.api}")
    out.print(f"  VNET_API={lab.api} vnet get ports   |   vnet lab exec {ports[0]} -- ip addr")


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_(
    port: Annotated[str, typer.Argument(help="The port whose workload runs the command.")],
    cmd: Annotated[list[str], typer.Argument(help="The command (after --).")],
    directory: DirOpt = None,
) -> None:
    """Run a command inside a port's workload namespace."""
    lab = RealLab(directory)
    try:
        ns = lab.netns(port)
    except LabError as e:
        fail(str(e))
    sys.stdout.flush()
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])


@lab_app.command("restart")
def restart(
    role: Annotated[str, typer.Argument(help="controller, or switch-CHASSIS")],
    directory: DirOpt = None,
) -> None:
    """Stop one of the lab's processes and start it again."""
    try:
        RealLab(directory).restart(role)
    except LabError as e:
        fail(str(e))
    out.print(f"{role} restarted")


@lab_app.command("down")
def down(directory: DirOpt = None) -> None:
    """Remove everything the lab made (also after a crash)."""
    lab = RealLab(directory)
    if not lab.state:
        out.print(f"no lab in {lab.dir}")
        return
    removed = lab.down()
    out.print(f"lab down: removed {len(removed)} thing(s)")
