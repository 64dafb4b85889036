"""`vnet bfd`: a running switch's BFD sessions to peer chassis, as `ovs-appctl bfd/show`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .common import out
from .switch import _ctl

__all__ = ["bfd_app"]

bfd_app = typer.Typer(no_args_is_help=True, help="BFD sessions of a running vnet switch.")

Switch = Annotated[str, typer.Argument(help="Switch name (a lab's chassis name works too).")]
Port = Annotated[str, typer.Argument(help="The tunnel port the session runs over.")]
Peer = Annotated[str, typer.Argument(help="The peer chassis' underlay IPv4 address.")]


@bfd_app.command("add")
def bfd_add(
    switch: Switch,
    port: Port,
    peer: Peer,
    min_tx: Annotated[
        int, typer.Option("--min-tx", min=1, help="Desired min TX interval, ms.")
    ] = 100,
    min_rx: Annotated[
        int, typer.Option("--min-rx", min=1, help="Required min RX interval, ms.")
    ] = 100,
    mult: Annotated[int, typer.Option("--mult", min=1, max=255, help="Detect multiplier.")] = 3,
) -> None:
    """Run a session to PEER over PORT (an existing one gets the new timers)."""
    r = _ctl(switch, "bfd-add", port=port, peer=peer, min_tx=min_tx, min_rx=min_rx, mult=mult)
    out.print(f"{r['port']} {r['peer']}: local discriminator {r['local_disc']:#x}", highlight=False)


@bfd_app.command("del")
def bfd_del(switch: Switch, port: Port, peer: Peer) -> None:
    """Stop the session to PEER over PORT."""
    r = _ctl(switch, "bfd-del", port=port, peer=peer)
    out.print(f"{r['port']} {r['peer']}: removed", highlight=False)


@bfd_app.command("show")
def bfd_show(
    switch: Switch, as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False
) -> None:
    """Every session: state, diagnostic, the peer's, timers and counters."""
    r: dict[str, Any] = _ctl(switch, "bfd-show")
    if as_json:
        out.print_json(json.dumps(r))
        return
    if not r["sessions"]:
        out.print("no BFD sessions", highlight=False)
    for s in r["sessions"]:
        fwd = "forwarding" if s["forwarding"] else "not forwarding"
        out.print(
            f"{s['port']} {s['peer']}: {s['state']} ({s['diagnostic']}), {fwd}; "
            f"remote {s['remote_state']} ({s['remote_diagnostic']}); "
            f"tx every {s['tx_interval_us'] // 1000} ms, detect {s['detect_time_us'] // 1000} ms; "
            f"flaps {s['flap_count']}, rx {s['rx_packets']}, tx {s['tx_packets']}",
            highlight=False,
            soft_wrap=True,
        )
    drops = r["drops"]
    out.print(
        "drops: " + (", ".join(f"{k} {v}" for k, v in drops.items()) or "none"), highlight=False
    )
    sd = r.get("stand_down", {"flows": 0, "standing_down": 0})
    if r.get("isolated"):
        out.print(f"isolated: every session that was up is down; {sd['standing_down']} of "
                  f"{sd['flows']} active-gateway flows stand down", highlight=False)  # fmt: skip
    else:
        out.print(f"not isolated; {sd['flows']} active-gateway flows would stand down if it were",
                  highlight=False)  # fmt: skip
