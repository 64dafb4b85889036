"""`vnet lab up|exec|down|restart`: topologies of namespaces on this machine.

Without `--dir` every command finds the lab that is up (see `find_lab`), so
a lab is used by name alone; `down` says plainly when there is none, and
never reports success while a lab it can see is still up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ..client import ApiError
from ..lab.real import Lab, LabError, default_dir, find_lab, running_labs
from .common import fail, load_yaml, out

__all__ = ["lab_app"]

lab_app = typer.Typer(no_args_is_help=True, help="Build a topology of namespaces on this machine.")
DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="Lab state directory (default: the lab that is up, or RUNDIR/lab)."),
]


@lab_app.command("up")
def up(
    file: Annotated[Path, typer.Argument(help="Topology (model) file, YAML.")],
    directory: DirOpt = None,
    switch: Annotated[
        str | None,
        typer.Option("--switch", help="vnet or ovs for every chassis (default: as the file says)."),
    ] = None,
    sim: Annotated[
        bool, typer.Option("--sim", help="Simulated in one process, no root: ping and trace.")
    ] = False,
) -> None:
    """Start the controller, the switches and one namespace per port; wait until all are up."""
    if switch not in (None, "vnet", "ovs"):
        fail(f"--switch {switch!r}: expected vnet or ovs")
    doc = load_yaml(file, "topology file")
    if directory is None and running_labs():
        fail(f"a lab is already up in {running_labs()[0].dir} (vnet lab down first)", 1)
    lab = Lab(directory or default_dir())
    try:
        lab.up(doc, switch=switch, sim=sim)
    except ApiError as e:
        fail(f"{file}: {e}")
    except LabError as e:
        fail(str(e), 1)
    ports = sorted(lab.state["ports"])
    how = "simulated" if sim else "up"
    out.print(f"lab {how}: {len(ports)} port(s) ({', '.join(ports)}); API {lab.api}")
    if ports:
        cmd = "ping -c 3 ADDR" if sim else "ip addr"
        # a lab elsewhere than the default is found only when named
        where, api = ("", "") if directory is None else (f" --dir {directory}", f" --api {lab.api}")
        out.print(
            f"  vnet get ports{api}   |   vnet lab exec{where} {ports[0]} -- {cmd}",
            highlight=False,
        )


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_(
    port: Annotated[str, typer.Argument(help="The port whose workload runs the command.")],
    cmd: Annotated[list[str], typer.Argument(help="The command (after --).")],
    directory: DirOpt = None,
) -> None:
    """Run a command inside a port's workload namespace (a simulated lab runs only ping)."""
    lab = find_lab(directory)
    if lab.sim:
        _sim_ping(lab, port, cmd)
    try:
        ns = lab.netns(port)
    except LabError as e:
        fail(str(e))
    sys.stdout.flush()
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])


def _sim_ping(lab: Lab, port: str, cmd: list[str]) -> NoReturn:
    """`ping [-6] [-c N] [-i S] [-W S] [-q] ADDR` against a simulated workload."""
    if not cmd or cmd[0] not in ("ping", "ping6"):
        fail(f"{' '.join(cmd) or 'no command'}: a simulated lab runs only ping (and ping6)")
    count, addr, args, i = 3, None, cmd[1:], 0
    while i < len(args):
        a = args[i]
        if a in ("-c", "-i", "-W", "-w", "-s"):
            if i + 1 >= len(args):
                fail(f"ping {a}: needs a value")
            if a == "-c":
                if not args[i + 1].isdigit():
                    fail(f"ping -c {args[i + 1]!r}: expected a count")
                count = int(args[i + 1])
            i += 2
            continue
        if a in ("-4", "-6", "-q", "-n"):
            i += 1
            continue
        if a.startswith("-"):
            fail(f"ping {a}: not simulated (-c, -i, -W, -q, -4, -6 are)")
        addr = a
        i += 1
    if addr is None:
        fail("ping: no destination address")
    try:
        r = lab.ping(port, addr, count)
    except LabError as e:
        fail(str(e), 1)
    loss = 100 * (r["sent"] - r["received"]) // r["sent"]
    out.print(f"PING {addr} from {port} (simulated)", highlight=False)
    out.print(f"{r['sent']} packets transmitted, {r['received']} received, "
              f"{loss}% packet loss", highlight=False)  # fmt: skip
    raise typer.Exit(0 if r["received"] else 1)


@lab_app.command("serve-sim", hidden=True)
def serve_sim(
    directory: Annotated[Path, typer.Option("--dir")],
    api: Annotated[str, typer.Option("--api")],
) -> None:
    """The process of a simulated lab (started by `lab up --sim`)."""
    import asyncio
    import json

    from ..lab.sim import serve

    host, _, port = api.rpartition(":")
    doc = json.loads((directory / "topology.json").read_text())
    asyncio.run(serve(doc, str(directory / "sim.sock"), host, int(port)))


@lab_app.command("restart")
def restart(
    role: Annotated[str, typer.Argument(help="controller, or switch-CHASSIS")],
    directory: DirOpt = None,
) -> None:
    """Stop one of the lab's processes and start it again."""
    try:
        find_lab(directory).restart(role)
    except LabError as e:
        fail(str(e))
    out.print(f"{role} restarted")


@lab_app.command("down")
def down(directory: DirOpt = None) -> None:
    """Remove everything the lab made (also after a crash)."""
    lab = find_lab(directory)
    if not lab.state:
        others = [o.dir for o in running_labs() if o.dir.resolve() != lab.dir.resolve()]
        if others:
            fail(
                f"no lab in {lab.dir}; a lab is up in {others[0]} (vnet lab down --dir {others[0]})"
            )
        out.print(f"no lab is up: nothing to remove (none in {lab.dir})", highlight=False)
        return
    removed = lab.down()
    out.print(f"lab down: removed {len(removed)} thing(s) ({lab.dir})", highlight=False)
