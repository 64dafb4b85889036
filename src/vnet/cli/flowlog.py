"""`vnet flows log`: the connection log -- what the firewall's logged rules decided.

One line per record, oldest first: time, chassis, verdict, the logical ports
at both ends, the tuple and the rule; `-o json` prints one JSON object a line
instead (for a pipe).  `--follow` keeps printing records as the controller
logs them (a long poll of the API, as `tail -f`) until Ctrl-C.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from ..client import ApiError
from .common import fail, out
from .controller import ApiOpt, _api_fail, _client

__all__ = ["register_flow_log"]

POLL_WAIT = 10.0  # seconds each long poll of a follower may wait


def _line(r: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(r["time"]).isoformat(timespec="milliseconds")
    ports = f"{r['src_port'] or '-'} -> {r['dst_port'] or '-'}"
    a, b = r["src"], r["dst"]
    if r["proto"] in ("icmp", "icmpv6"):
        what = f"{r['proto']} {a} -> {b}"
        if r["sport"] is not None:
            what += f" type {r['sport']} code {r['dport']}"
    else:
        a = f"[{a}]" if ":" in a else a
        b = f"[{b}]" if ":" in b else b
        sp = f":{r['sport']}" if r["sport"] is not None else ""
        dp = f":{r['dport']}" if r["dport"] is not None else ""
        what = f"{r['proto']} {a}{sp} -> {b}{dp}"
    return f"{when} {r['chassis']} {r['verdict']} {ports} {what} {r['rule']} ({r['direction']})"


def register_flow_log(flows_app: typer.Typer) -> None:
    @flows_app.command("log")
    def flows_log(
        follow: Annotated[
            bool, typer.Option("--follow", "-f", help="Keep printing new records.")
        ] = False,
        port: Annotated[
            str | None, typer.Option("--port", help="Records with this port at either end.")
        ] = None,
        verdict: Annotated[
            str | None, typer.Option("--verdict", help="allow, deny or reject.")
        ] = None,
        since: Annotated[
            str | None,
            typer.Option("--since", help="From this time: ISO 8601 or seconds since the epoch."),
        ] = None,
        limit: Annotated[
            int, typer.Option("--limit", min=1, max=10_000, help="The newest this many.")
        ] = 100,
        output: Annotated[str, typer.Option("-o", "--output", help="lines or json")] = "lines",
        api: ApiOpt = None,
    ) -> None:
        """The connection log: what logged firewall rules allowed, denied or rejected."""
        if verdict is not None and verdict not in ("allow", "deny", "reject"):
            fail(f"--verdict {verdict!r}: expected allow, deny or reject")
        if output not in ("lines", "json"):
            fail(f"-o {output!r}: expected lines or json")
        c = _client(api)

        def show(records: list[dict[str, Any]]) -> None:
            for r in records:
                text = json.dumps(r) if output == "json" else _line(r)
                out.print(text, highlight=False, soft_wrap=True, markup=False)

        try:
            r = c.flow_log(port=port, verdict=verdict, since=since, limit=limit)
            show(r["records"])
            while follow:
                r = c.flow_log(port=port, verdict=verdict, after=r["next"], wait=POLL_WAIT)
                show(r["records"])
        except ApiError as e:
            _api_fail(e)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
