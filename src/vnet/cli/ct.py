"""`vnet ct`: a running switch's connection tracker, as `ovs-appctl dpctl/*-conntrack`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import out
from .switch import _ctl

__all__ = ["ct_app"]

ct_app = typer.Typer(no_args_is_help=True, help="Connection tracking of a running vnet switch.")

Switch = Annotated[str, typer.Argument(help="Switch name (a lab's chassis name works too).")]
Zone = Annotated[
    int | None, typer.Option("--zone", min=0, max=65535, help="Only this zone.", show_default=False)
]


@ct_app.command("dump")
def ct_dump(switch: Switch, zone: Zone = None) -> None:
    """Every connection, one line each, as dpctl/dump-conntrack prints them."""
    for line in _ctl(switch, "ct-dump", zone=zone):
        out.print(line, highlight=False, soft_wrap=True)


@ct_app.command("flush")
def ct_flush(switch: Switch, zone: Zone = None) -> None:
    """Forget every connection (of one zone)."""
    r = _ctl(switch, "ct-flush", zone=zone)
    out.print(f"{r['flushed']} connections flushed", highlight=False)


@ct_app.command("stats")
def ct_stats(
    switch: Switch,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Connections by state and zone, and what the tracker dropped, by reason."""
    r = _ctl(switch, "ct-stats")
    if as_json:
        out.print_json(json.dumps(r))
        return
    limit = r["limit"] or "none"
    out.print(f"connections: {r['connections']} (limit {limit}), committed {r['committed']}")
    for title, key in (("by state", "by_state"), ("by zone", "by_zone"), ("drops", "drops")):
        items = ", ".join(f"{k} {v}" for k, v in r[key].items()) or "none"
        out.print(f"{title}: {items}", highlight=False)
