"""`vnet ct`: a running switch's connection tracker, as `ovs-appctl dpctl/*-conntrack`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .common import fail, out
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
def ct_flush(
    switch: Switch,
    tuple_: Annotated[
        str | None,
        typer.Argument(
            metavar="[TUPLE]",
            help="Only connections with this original tuple, as dpctl/flush-conntrack takes it: "
            "ct_nw_src=A,ct_nw_dst=B,ct_nw_proto=6,ct_tp_src=P,ct_tp_dst=Q "
            "(ct_ipv6_src/dst; icmp_id, icmp_type, icmp_code).",
            show_default=False,
        ),
    ] = None,
    zone: Zone = None,
) -> None:
    """Forget every connection (of one zone; with the original tuple given)."""
    args: dict[str, Any] = {"zone": zone}
    if tuple_ is not None:
        args["tuple"] = tuple_
    r = _ctl(switch, "ct-flush", **args)
    out.print(f"{r['flushed']} connections flushed", highlight=False)


@ct_app.command("stats")
def ct_stats(
    switch: Switch,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Connections by state and zone, what the tracker dropped, by reason, and what
    its helpers did (FTP: data connections expected, related, rewritten)."""
    r = _ctl(switch, "ct-stats")
    if as_json:
        out.print_json(json.dumps(r))
        return
    limit = r["limit"] or "none"
    out.print(f"connections: {r['connections']} (limit {limit}), committed {r['committed']}")
    for title, key in (
        ("by state", "by_state"),
        ("by zone", "by_zone"),
        ("drops", "drops"),
        ("helpers", "helpers"),
    ):
        items = ", ".join(f"{k} {v}" for k, v in r.get(key, {}).items()) or "none"
        out.print(f"{title}: {items}", highlight=False)
    out.print(f"expected connections: {r.get('expectations', 0)}", highlight=False)
    _ipf_lines(r["ipf"])


def _ipf_lines(r: dict[str, Any]) -> None:
    on = ", ".join(f"{v} {'on' if e else 'off'}" for v, e in r["enabled"].items())
    size = "/".join(str(n) for n in r["min_frag_size"].values())
    out.print(
        f"reassembly: {on}; {r['fragments']} fragments held in {r['lists']} lists "
        f"(limit {r['max_frags']}); min fragment {size} bytes; timeout {r['timeout']:g} s",
        highlight=False,
    )
    for v in ("v4", "v6"):
        c = r[v]
        drops = ", ".join(f"{k} {n}" for k, n in c.items() if k.startswith("ipf_") and n)
        out.print(
            f"fragments ({v}): accepted {c['accepted']}, completed {c['completed']}, "
            f"reassembled {c['reassembled']}; drops: {drops or 'none'}",
            highlight=False,
        )


Version = Annotated[
    list[str] | None,
    typer.Option(help="v4 or v6 (repeatable).", show_default=False),
]


@ct_app.command("ipf")
def ct_ipf(
    switch: Switch,
    enable: Version = None,
    disable: Version = None,
    min_frag: Annotated[
        list[str] | None,
        typer.Option(
            "--min-frag",
            help="VERSION=BYTES: the least a fragment but the last may carry (v4=1200, v6=1280).",
            show_default=False,
        ),
    ] = None,
    max_frags: Annotated[
        int | None,
        typer.Option("--max-frags", help="Fragments held at most, in all.", show_default=False),
    ] = None,
    lists: Annotated[bool, typer.Option("--lists", help="Every list held, too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Fragment reassembly for the tracker: settings and status, as dpctl/ipf-*."""
    args: dict[str, Any] = {}
    on: dict[str, bool] = {}
    for flag, versions in (("--enable", enable), ("--disable", disable)):
        for v in versions or ():
            if v not in ("v4", "v6"):
                fail(f"{flag}: expected v4 or v6, got {v!r}")
            on[v] = flag == "--enable"
    if on:
        args["enable"] = on
    sizes: dict[str, int] = {}
    for item in min_frag or ():
        v, _, n = item.partition("=")
        if v not in ("v4", "v6") or not n.isdigit():
            fail(f"--min-frag: expected v4=BYTES or v6=BYTES, got {item!r}")
        sizes[v] = int(n)
    if sizes:
        args["min_frag"] = sizes
    if max_frags is not None:
        args["max_frags"] = max_frags
    r = _ctl(switch, "ct-ipf", **args)
    if as_json:
        out.print_json(json.dumps(r))
        return
    _ipf_lines(r)
    if lists:
        for line in r["dump"]:
            out.print(line, highlight=False, soft_wrap=True)
