"""`vnet controller run`, and the model commands: apply, create, get, describe, delete, drift.

`controller run` is the daemon: the store (SQLite, or etcd with `--store`), the OpenFlow listener
switches dial, the reconciler, and the REST API on one asyncio loop.  The
other commands are clients of that API (the SDK): `--api`, else $VNET_API,
else the lab that is up (its state names its API), else the default URL --
and when nothing answers, the error says how to point them at one.  Tables
for people, `-o json|yaml` for machines; ids shown as the names they stand
for.  Bad input exits with status 2 and the API's message, which names the
field.  `drift` exits 1 when it finds drift, as `diff` does.  `get routes
ROUTER` shows a router's effective routing table, with each route's origin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from ..api import serve
from ..client import DEFAULT_API, PLURAL, ApiError, Client
from ..controller.service import Controller
from ..ofp.target import parse_target
from ..store import SqliteStore, Store, StoreError, default_path
from .common import err, fail, load_yaml, out

__all__ = [
    "controller_app",
    "port_app",
    "register",
]

controller_app = typer.Typer(no_args_is_help=True, help="Run the vnet SDN controller.")

ApiOpt = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="VNET_API",
        help=f"API URL (default: the lab's, if one is up, else {DEFAULT_API}).",
    ),
]
Output = Annotated[str, typer.Option("-o", "--output", help="table, json or yaml")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Tenant name or id (scope).")]


def _api_fail(e: ApiError) -> NoReturn:
    if e.status == 0 and not _labs():
        fail(
            f"{e}\n  no lab is up here; point vnet at a controller with VNET_API "
            f"(export VNET_API=http://HOST:PORT, the --api of `vnet controller run`) "
            f"or --api URL, or start one: vnet lab up FILE",
            1,
        )
    fail(str(e), 1 if e.status == 0 else 2)


def _labs() -> list[Any]:
    from ..lab.real import running_labs

    return running_labs()


def _lab_of(url: str) -> Any:
    """The running lab whose API is `url`, if any."""
    return next((lab for lab in _labs() if lab.api == url.rstrip("/")), None)


def _client(api: str | None) -> Client:
    """A client of `api`, else of the lab that is up, else of the default API."""
    if api:
        return Client(api)
    labs = _labs()
    if labs:
        return Client(labs[0].api, token=labs[0].token)
    return Client(DEFAULT_API)


def open_store(db: Path | None, store_url: str | None) -> tuple[Store, str]:
    """The store `--db` / `--store` name (SQLite in the user data dir by default), and
    where it is; exits naming the option when it cannot be opened."""
    if store_url is not None:
        if db is not None:
            fail("--store and --db: give one (--db is the SQLite file, --store an etcd)")
        from ..store.etcd import EtcdStore

        try:
            etcd = EtcdStore.from_url(store_url)
        except ValueError as e:
            fail(f"--store: {e}")
        try:
            etcd.revision()  # etcd answers, or the error says so now
        except StoreError as e:
            fail(f"--store {store_url}: {e}", 1)
        return etcd, store_url
    path = db or default_path()
    try:
        return SqliteStore(path), str(path)
    except Exception as e:
        fail(f"--db {path}: {e}")


@controller_app.command("run")
def controller_run(
    db: Annotated[
        Path | None, typer.Option("--db", help="SQLite file (default: in the user data dir).")
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="etcd://HOST:PORT[,HOST:PORT...]\\[/PREFIX]: the model in etcd (keys under PREFIX, "
            "default /vnet/) instead of SQLite.",
        ),
    ] = None,
    api: Annotated[
        str, typer.Option("--api", help="HOST:PORT for the REST API")
    ] = "127.0.0.1:8080",
    of_listen: Annotated[
        list[str] | None, typer.Option("--of-listen", help="ptcp:PORT[:IP] or punix:PATH")
    ] = None,
    of_advertise: Annotated[
        str | None,
        typer.Option(
            "--of-advertise",
            help="tcp:HOST:PORT or unix:PATH that Open vSwitch chassis are told to dial "
            "(default: from --of-listen).",
        ),
    ] = None,
    neighbour_age: Annotated[
        float,
        typer.Option(
            "--neighbour-age",
            help="Seconds a router's learned neighbour lives unheard (0: never aged).",
        ),
    ] = 300.0,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run the controller until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(name)s: %(message)s"
    )
    host, _, port = api.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--api {api!r}: expected HOST:PORT")
    if not neighbour_age >= 0:
        fail(f"--neighbour-age {neighbour_age}: seconds, 0 or more (0: never aged)")
    store, where = open_store(db, store_url)
    try:
        ctl = Controller(
            store, of_listen if of_listen is not None else ["ptcp:6653"], of_advertise,
            neighbour_age=neighbour_age,
        )  # fmt: skip
    except ValueError as e:
        fail(f"--of-listen: {e}")
    if of_advertise is not None:
        try:
            if parse_target(of_advertise)[0] not in ("tcp", "unix"):
                raise ValueError(f"{of_advertise!r}: expected tcp:HOST:PORT or unix:PATH")
        except ValueError as e:
            fail(f"--of-advertise: {e}")

    async def main() -> None:
        await ctl.start()
        err.print(
            f"vnet controller: store {where}, API http://{host}:{port}, "
            f"OpenFlow {', '.join(of_listen or ['ptcp:6653'])}",
            highlight=False,
        )
        try:
            await serve(ctl, host, int(port))
        finally:
            await ctl.stop()
            store.close()

    try:
        asyncio.run(main())
    except OSError as e:
        fail(str(e), 1)


# -- model commands ----------------------------------------------------------------------------
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "tenant": [("NAME", "name"), ("ID", "id"), ("LABELS", "labels")],
    "network": [
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("VNI", "segment_id"),
        ("MTU", "mtu"),
        ("ADMIN", "admin_up"),
    ],
    "subnet": [
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("NETWORK", "network"),
        ("CIDR", "cidr"),
        ("GATEWAY", "gateway"),
    ],
    "port": [
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("NETWORK", "network"),
        ("MAC", "mac"),
        ("IPS", "fixed_ips"),
        ("CHASSIS", "chassis"),
        ("STATUS", "status"),
    ],
    "chassis": [
        ("NAME", "name"),
        ("SWITCH", "switch"),
        ("DATAPATH", "datapath_id"),
        ("ENDPOINT", "endpoint"),
        ("UNDERLAY", "underlay"),
    ],
    "security_group": [
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("SELECTOR", "selector"),
        ("MEMBERS", "members"),
        ("RULES", "rules"),
    ],
    "policy": [
        ("PRIORITY", "priority"),
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("APPLIED TO", "applied_to"),
        ("RULES", "rules"),
    ],
    "router": [
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("INTERFACES", "interfaces"),
        ("ROUTES", "routes"),
        ("GATEWAY", "gateway"),
        ("ADMIN", "admin_up"),
    ],
    "floating_ip": [
        ("NAME", "name"),
        ("TENANT", "tenant"),
        ("NETWORK", "network"),
        ("IP", "ip"),
        ("PORT", "port"),
        ("FORWARDS", "port_forwardings"),
    ],
    "neighbour": [
        ("ROUTER", "router"),
        ("NETWORK", "network"),
        ("IP", "ip"),
        ("MAC", "mac"),
        ("HEARD", "seen_at"),
    ],
    "bfd_status": [
        ("CHASSIS", "name"),
        ("SESSIONS", "sessions"),
    ],
    "chassis_status": [
        ("CHASSIS", "name"),
        ("SWITCH", "switch"),
        ("PORTS UP", "ports_up"),
    ],
}


def _kind(kind: str) -> str:
    k = kind.lower().replace("-", "_")
    for singular, plural in PLURAL.items():
        if k in (singular, plural):
            return singular
    fail(f"unknown kind {kind!r} (one of {', '.join(PLURAL)})")


def _names(c: Client) -> dict[str, str]:
    """id -> name for the objects other objects refer to."""
    names: dict[str, str] = {}
    for kind in ("tenant", "network", "chassis", "subnet", "port", "security_group", "router"):
        for o in c.list(kind):
            names[o["id"]] = o["name"]
    return names


def _cell(field: str, value: Any, names: dict[str, str]) -> str:
    if value is None:
        return "-"
    if field == "fixed_ips":
        return ", ".join(f["ip"] for f in value if f.get("ip"))
    if field in ("labels", "selector", "applied_to"):
        if field != "labels" and not value:
            return "every port"
        return ",".join(f"{k}={v}" for k, v in value.items())
    if field in ("rules", "routes", "port_forwardings"):
        return str(len(value))
    if field == "interfaces":
        return ", ".join(names.get(i["subnet"], i["subnet"]) for i in value) or "-"
    if field == "gateway":
        return f"{names.get(value['network'], value['network'])} {value.get('ip') or ''}".strip()
    if field in ("members", "security_groups"):
        return ", ".join(names.get(str(v), str(v)) for v in value) or "-"
    if field in ("tenant", "network", "chassis", "port", "router"):
        return names.get(str(value), str(value))
    if field == "sessions":  # a chassis' BFD sessions: each peer's state
        return ", ".join(f"{names.get(k, k)}={v}" for k, v in sorted(value.items())) or "-"
    if field == "seen_at":  # a learned neighbour: how long ago it was last heard from
        return f"{max(0, int(time.time() - float(value)))}s ago"
    if isinstance(value, bool):
        return "up" if value else "down"
    return str(value)


def _named(value: Any, names: dict[str, str]) -> Any:
    """`value` with the ids it holds (a chassis, a subnet of a fixed IP) as names."""
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_named(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _named(v, names) for k, v in value.items()}
    return value


def _emit(objs: Any, output: str) -> bool:
    if output == "json":
        print(json.dumps(objs, indent=2, sort_keys=True))
    elif output == "yaml":
        print(yaml.safe_dump(objs, sort_keys=True), end="")
    elif output != "table":
        fail(f"-o {output!r}: expected table, json or yaml")
    else:
        return False
    return True


def _routes(router: str, tenant: str | None, api: str | None, output: str) -> None:
    """A router's effective routing table: one row a route, one line a next hop."""
    try:
        with _client(api) as c:
            res = c.routes(router, tenant)
    except ApiError as e:
        _api_fail(e)
    if _emit(res, output):
        return
    t = Table("PREFIX", "KIND", "NEXT HOP", "OUT", "INSTALLED", "FROM", box=None)
    for r in res["routes"]:
        via = [h["ip"] or "direct" for h in r["nexthops"]] or ["-"]
        where = [
            f"{h['interface']}: {h['subnet']} ({h['network']})" if h["interface"] else "-"
            for h in r["nexthops"]
        ] or ["-"]
        # each next hop's origin on its line; what no usable next hop came from, after
        shown = [o for h in r["nexthops"] for o in h["origin"]]
        lines = [" + ".join(h["origin"]) for h in r["nexthops"]]
        lines += [o for o in r["origin"] if o not in shown] if shown else r["origin"]
        state = "yes" if r["installed"] else "[red]no[/]"
        if r["why"]:
            state += f": {escape(r['why'])}"
        t.add_row(r["cidr"], r["kind"], "\n".join(via), escape("\n".join(where)), state,
                  escape("\n".join(lines)))  # fmt: skip
    down = "" if res["admin_up"] else " (administratively down)"
    out.print(f"router {res['router']} (tenant {res['tenant']}){down}", highlight=False)
    out.print(t)


port_app = typer.Typer(no_args_is_help=True, help="Operations on one port.")


@port_app.command("migrate")
def port_migrate(
    port: Annotated[str, typer.Argument(help="The port (name or id).")],
    to: Annotated[str, typer.Option("--to", help="The chassis to move it to.")],
    tenant: TenantOpt = None,
    lab_dir: Annotated[
        Path | None,
        typer.Option("--lab", help="A lab's directory (default: the lab that is up)."),
    ] = None,
    api: ApiOpt = None,
) -> None:
    """Move a workload to another chassis: binding, every chassis' flows, an announcement.

    In a lab the workload's cable moves too; elsewhere the hypervisor moves the
    workload, and this tells the network where it is now.
    """
    from ..lab.real import LabError, find_lab

    lab = find_lab(lab_dir)
    if lab_dir is not None and not lab.state:
        fail(f"no lab is up in {lab_dir}")
    try:
        if lab.state and not lab.sim and port in lab.state["ports"]:
            p = lab.migrate(port, to)
        else:
            with _client(api or (lab.api if lab.state else None)) as c:
                p = c.migrate(port, to, tenant)
    except ApiError as e:
        _api_fail(e)
    except LabError as e:
        fail(str(e))
    out.print(f"port {p['name']} is on chassis {to}")


def _print_reachability(reach: list[dict[str, Any]]) -> None:
    """What a dry run would open and close between ports, and the verdict before and after."""
    if not reach:
        return
    t = Table("", "FROM", "TO", "SERVICE", "BEFORE", "AFTER", box=None)
    for r in reach:
        colour = "green" if r["change"] == "opens" else "red"
        svc = r["service"] + (" (IPv6)" if r["ethertype"] == "IPv6" else "")
        t.add_row(f"[{colour}]{r['change']}[/]", ",".join(r["from"]), ",".join(r["to"]), svc,
                  r["before"], r["after"])  # fmt: skip
    out.print(t)
    opens = sum(r["change"] == "opens" for r in reach)
    out.print(f"reachability: {opens} opened, {len(reach) - opens} closed")


def _print_cuts(cuts: dict[str, Any] | None, closes: bool) -> None:
    """The live connections a dry run would cut, and the chassis it could not read."""
    if cuts is None or not (closes or cuts["count"] or cuts["unreachable"]):
        return
    for c in cuts["connections"]:
        where = ", ".join(f"{e['chassis']} zone {e['zone']}" for e in c["entries"])
        out.print(f"  cuts {c['from']} -> {c['to']} {c['service']} ({c['tuple']}) on {where}",
                  highlight=False, soft_wrap=True)  # fmt: skip
    out.print(f"live connections cut: {cuts['count']}")
    for ch, why in cuts["unreachable"].items():
        out.print(f"chassis {ch}: connections not counted: {why}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply(
        file: Annotated[Path, typer.Option("-f", "--file", help="Model file (YAML).")],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Print the diff; change nothing.")
        ] = False,
        api: ApiOpt = None,
        output: Output = "table",
    ) -> None:
        """Make the model equal to FILE: creates, updates and deletes."""
        doc = load_yaml(file)
        try:
            with _client(api) as c:
                lab = _lab_of(c.base_url)
                if lab is not None:  # what the lab filled in for its file counts as the file's
                    doc = lab.as_applied(doc)
                res = c.apply(doc, dry_run=dry_run)
                names = _names(c) if res["changes"] else {}
        except ApiError as e:
            _api_fail(ApiError(e.status, [], f"{file}: {e}"))
        if _emit(res, output):
            return
        t = Table("ACTION", "KIND", "NAME", "CHANGES", box=None)
        for ch in res["changes"]:
            fields = ", ".join(
                f"{k}: {json.dumps(_named(v['old'], names))} -> "
                f"{json.dumps(_named(v['new'], names))}"
                for k, v in ch["fields"].items()
                if k != "id"
            )
            colour = {"create": "green", "delete": "red", "update": "yellow"}[ch["action"]]
            t.add_row(
                f"[{colour}]{ch['action']}[/]",
                ch["kind"],
                ch["name"],
                fields if ch["action"] == "update" else "",
            )
        if res["changes"]:
            out.print(t)
        verb = "would change" if dry_run else "changed"
        out.print(f"{len(res['changes'])} object(s) {verb}")
        _print_reachability(res.get("reachability") or [])
        closes = any(r["change"] == "closes" for r in res.get("reachability") or [])
        _print_cuts(res.get("cuts"), closes)
        for chassis, fm in (res.get("flow_mods") or {}).items():
            if not fm["connected"]:
                out.print(f"chassis {chassis}: not connected (flows are computed when it connects)")
                continue
            out.print(f"chassis {chassis}: {len(fm['flow_mods'])} flow-mod(s)")
            for line in fm["flow_mods"]:
                out.print(f"  {line}", highlight=False, soft_wrap=True)

    @app.command("create")
    def create(
        file: Annotated[Path, typer.Option("-f", "--file", help="Model file (YAML).")],
        api: ApiOpt = None,
        output: Output = "table",
    ) -> None:
        """Add the objects of FILE to the model (all or none; refused if one exists)."""
        doc = load_yaml(file)
        try:
            with _client(api) as c:
                made = c.create_all(doc)
        except ApiError as e:
            _api_fail(ApiError(e.status, e.loc, f"{file}: {e.message}"))
        if _emit(made, output):
            return
        for m in made:
            out.print(f"created {m['kind']} {m['object']['name']}", highlight=False)
        out.print(f"{len(made)} object(s) created")

    @app.command("get")
    def get(
        kind: Annotated[
            str,
            typer.Argument(
                help="tenant, network, subnet, port, chassis, security_group, policy, router, "
                "floating_ip, neighbour (a router's learned neighbours: read only), or routes "
                "(with a router's name: its routing table)"
            ),
        ],
        name: Annotated[str | None, typer.Argument()] = None,
        tenant: TenantOpt = None,
        label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value")] = None,
        api: ApiOpt = None,
        output: Output = "table",
    ) -> None:
        """List objects of a kind, or show one; `get routes ROUTER`: its routing table."""
        if kind.lower() in ("routes", "route"):
            if name is None:
                fail("vnet get routes ROUTER: name the router (name or id)")
            _routes(name, tenant, api, output)
            return
        k = _kind(kind)
        labels = {}
        for item in label or []:
            key, sep, value = item.partition("=")
            if not sep:
                fail(f"--label {item!r}: expected key=value")
            labels[key] = value
        try:
            with _client(api) as c:
                objs = [c.get(k, name, tenant)] if name else c.list(k, tenant, labels)
                if _emit(objs[0] if name else objs, output):
                    return
                names = _names(c)
        except ApiError as e:
            _api_fail(e)
        t = Table(*(h for h, _ in COLUMNS[k]), box=None)
        for o in objs:
            t.add_row(*(_cell(f, o.get(f), names) for _, f in COLUMNS[k]))
        out.print(t)

    @app.command("describe")
    def describe(
        kind: Annotated[str, typer.Argument()],
        name: Annotated[str, typer.Argument()],
        tenant: TenantOpt = None,
        api: ApiOpt = None,
    ) -> None:
        """Everything about one object, with names for the ids it refers to."""
        k = _kind(kind)
        try:
            with _client(api) as c:
                o = c.get(k, name, tenant)
                names = _names(c)
                related = []
                if k == "network":
                    related = [p["name"] for p in c.list("port") if p["network"] == o["id"]]
        except ApiError as e:
            _api_fail(e)
        for key in ("tenant", "network", "chassis"):
            if o.get(key):
                o[key] = f"{names.get(o[key], o[key])} ({o[key]})"
        for fip in o.get("fixed_ips") or []:
            if isinstance(fip, dict) and fip.get("subnet") in names:
                fip["subnet"] = f"{names[fip['subnet']]} ({fip['subnet']})"
        # groups, ports, subnets, networks and chassis by name
        for key in ("security_groups", "members", "rules", "interfaces", "gateway", "port",
                    "port_forwardings"):  # fmt: skip
            if o.get(key):
                o[key] = _named(o[key], names)
        if related:
            o["ports"] = related
        print(yaml.safe_dump(o, sort_keys=False), end="")

    @app.command("delete")
    def delete(
        kind: Annotated[str, typer.Argument()],
        name: Annotated[str, typer.Argument()],
        cascade: Annotated[
            bool, typer.Option("--cascade", help="Also what depends on it.")
        ] = False,
        tenant: TenantOpt = None,
        api: ApiOpt = None,
    ) -> None:
        """Delete one object (refused while something depends on it, unless --cascade)."""
        k = _kind(kind)
        try:
            with _client(api) as c:
                c.delete(k, name, cascade=cascade, tenant=tenant)
        except ApiError as e:
            _api_fail(e)
        out.print(f"{k} {name} deleted")

    @app.command("trace")
    def trace(
        port: Annotated[
            str,
            typer.Argument(
                help="The port the packet comes from (with --from-outside: the packet).",
                show_default=False,
            ),
        ],
        packet: Annotated[str, typer.Argument(help="e.g. icmp,nw_dst=10.0.0.11")] = "",
        from_outside: Annotated[
            str | None,
            typer.Option(
                "--from-outside",
                metavar="NETWORK",
                help="From the physical network, by this external network's uplink.",
            ),
        ] = None,
        chassis: Annotated[
            str | None,
            typer.Option(
                "--chassis",
                help="With --from-outside: whose uplink (default: the chassis that "
                "answers for the destination).",
            ),
        ] = None,
        tenant: TenantOpt = None,
        api: ApiOpt = None,
        output: Output = "table",
    ) -> None:
        """Trace a packet through every chassis it reaches: the switches and routers it
        crosses, stage by stage with each flow's origin, the tunnels between chassis, and
        each NAT with the addresses and ports before and after."""
        src: str | None = port
        if from_outside is not None:
            if packet:
                fail("with --from-outside give only the packet, not a port")
            src, packet = None, port
        try:
            with _client(api) as c:
                r = c.trace(src, packet, tenant, from_outside=from_outside, chassis=chassis)
        except ApiError as e:
            _api_fail(e)
        if not _emit(r["trace"], output):
            out.print(r["text"], soft_wrap=True)

    @app.command("drift")
    def drift(
        chassis: Annotated[str | None, typer.Argument(help="Chassis (default: all).")] = None,
        repair: Annotated[
            bool, typer.Option("--repair", help="Make the switch equal to the model.")
        ] = False,
        api: ApiOpt = None,
        output: Output = "table",
    ) -> None:
        """Flows on a switch that the model does not explain, and model flows a switch lacks."""
        reports, failed = [], []
        try:
            with _client(api) as c:
                targets = [chassis] if chassis else [ch["name"] for ch in c.list("chassis")]
                for name in targets:
                    try:
                        reports.append(c.drift(name, repair=repair))
                    except ApiError as e:
                        if e.status == 0 or chassis:
                            raise
                        failed.append(f"chassis {name}: {e.message}")
        except ApiError as e:
            _api_fail(e)
        for line in failed:
            err.print(line)
        found = any(r["drift"] for r in reports) and not repair
        if _emit(reports, output):
            raise typer.Exit(1 if failed or found else 0)
        for r in reports:
            n = len(r["drift"])
            state = "repaired" if repair and n else "drift" if n else "no drift"
            out.print(f"chassis {r['chassis']}: {state}" + (f" ({n} flow(s))" if n else ""))
            for d in r["drift"]:  # whole lines: a flow is too long for a table column
                out.print(f"  {d['kind']:8s} {d['flow']}", soft_wrap=True)
                out.print(f"  {'':8s} from: {d['origin']}", soft_wrap=True)
        if failed or found:
            raise typer.Exit(1)
