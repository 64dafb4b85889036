"""`vnet agent run`: the controller's work for one chassis, on that chassis.

An agent reads the model from the shared store (`--store etcd://...`, or an
SQLite file several processes on one machine share), compiles and localizes
it for its own chassis and keeps that chassis' switch equal to it -- the
controller's own code (`controller.service.Controller` with `scope`), never
another chassis'.  It dials the switch (`--switch unix:PATH` or
`tcp:HOST:PORT`, a vnet switch's or Open vSwitch's management socket), or
takes its connection (`--of-listen`).  What only the chassis knows -- its
switch session, the ports it made up, its BFD sessions, the neighbours it
hears -- it writes to the store, where the controller serving the API reads
it.  The agent serves no API and does no singleton work (neighbour aging is
the controller's).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from ..controller.service import Controller
from ..ofp.target import parse_target
from .common import err, fail
from .controller import open_store

__all__ = ["agent_app"]

agent_app = typer.Typer(no_args_is_help=True, help="Program one chassis from the shared store.")


@agent_app.command("run")
def agent_run(
    chassis: Annotated[str, typer.Option("--chassis", help="The chassis (name or id).")],
    db: Annotated[
        Path | None, typer.Option("--db", help="SQLite file shared with the controller.")
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store", help="etcd://HOST:PORT[,HOST:PORT...]\\[/PREFIX]: the model in etcd."
        ),
    ] = None,
    switch: Annotated[
        str | None,
        typer.Option("--switch", help="unix:PATH or tcp:HOST:PORT: the switch to dial."),
    ] = None,
    of_listen: Annotated[
        list[str] | None,
        typer.Option("--of-listen", help="ptcp:PORT[:IP] or punix:PATH: the switch dials in."),
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run the chassis' agent until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(name)s: %(message)s"
    )
    if not chassis.strip():
        fail("--chassis: name the chassis this agent programs")
    if switch is None and not of_listen:
        fail("--switch or --of-listen: say how the agent reaches its switch")
    if switch is not None:
        try:
            if parse_target(switch)[0] not in ("tcp", "unix"):
                raise ValueError(f"{switch!r}: expected unix:PATH or tcp:HOST:PORT")
        except ValueError as e:
            fail(f"--switch: {e}")
    store, where = open_store(db, store_url)
    try:
        ctl = Controller(store, of_listen or [], scope=chassis, dial=switch)
    except ValueError as e:
        fail(f"--of-listen: {e}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await ctl.start()
        err.print(
            f"vnet agent: chassis {chassis}, store {where}, switch "
            f"{switch or ', '.join(of_listen or [])}",
            highlight=False,
        )
        try:
            await stop.wait()
        finally:
            await ctl.stop()
            store.close()

    try:
        asyncio.run(main())
    except OSError as e:
        fail(str(e), 1)
