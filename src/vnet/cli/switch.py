"""`vnet switch ...` and `vnet ofctl ...`: run a switch, and talk to one.

`vnet switch run` is the daemon: ports, the OpenFlow agent (controllers,
passive listener, management socket) and the control socket, until SIGTERM
or Ctrl-C, after which every device it created is removed.  The other
commands are clients: `switch add-port/del-port/show` over the control
socket, `ofctl` over OpenFlow 1.3 (the management socket of a switch named
on the command line, or any `tcp:HOST:PORT`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from rich.table import Table

from ..datapath.control import ControlServer, request, rundir
from ..datapath.port import PortConfigError, parse_port_spec
from ..datapath.runner import Runner
from ..datapath.switch import FailMode, Switch, SwitchError
from ..ofp.agent import Agent
from ..ofp.client import OFClient, OFClientError
from ..ofp.convert import DP, OFError, flow_from_ofp, flow_mod_to_ofp, group_from_ofp, match_to_ofp
from ..pipeline.fields import FieldError
from ..pipeline.flow import Rule
from ..pipeline.match import Match
from ..pipeline.ofctl import FlowSyntaxError, format_dump, format_group, parse_flow, parse_match
from .common import err, fail, out

__all__ = ["ofctl_app", "switch_app"]

switch_app = typer.Typer(no_args_is_help=True, help="Run the vnet switch and manage its ports.")
ofctl_app = typer.Typer(
    no_args_is_help=True, help="OpenFlow 1.3 client for a switch (ovs-ofctl syntax)."
)


def _datapath_id(text: str) -> int:
    """16 hex digits, as Open vSwitch's other-config:datapath-id, or 0x-prefixed hex."""
    t = text.strip()
    digits = t[2:] if t[:2].lower() == "0x" else t
    if t[:2].lower() != "0x" and len(digits) != 16:
        raise ValueError(f"expected 16 hex digits or 0x-prefixed hex, got {text!r}")
    if not 1 <= len(digits) <= 16 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"expected 16 hex digits or 0x-prefixed hex, got {text!r}")
    value = int(digits, 16)
    if value == 0:
        raise ValueError("0 is not a datapath id")
    return value


def _paths(name: str) -> tuple[str, str]:
    d = rundir()
    return os.path.join(d, f"{name}.mgmt"), os.path.join(d, f"{name}.ctl")


def _find(name: str) -> tuple[str, str | None]:
    """(management target, control socket or None) of a running switch named `name`:
    one started here (in RUNDIR), else a lab's (a lab keeps its switches' sockets in
    its directory, whatever namespace they run in); else where one would be."""
    from ..lab.real import running_labs

    mgmt, ctl = _paths(name)
    if os.path.exists(mgmt) or os.path.exists(ctl):
        return f"unix:{mgmt}", ctl
    for lab in running_labs():
        found = lab.switch_sockets(name)
        if found is not None:
            return found
    return f"unix:{mgmt}", ctl


@switch_app.command("run")
def switch_run(
    name: Annotated[str, typer.Option("--name", help="Switch name (also its internal port).")],
    port: Annotated[
        list[str] | None,
        typer.Option(
            "--port",
            help="A netdev to attach: NAME[,tag=N|trunks=A+B,native=N][,mac=..][,ip=..][,port_security=false]",
        ),
    ] = None,
    tap: Annotated[
        list[str] | None,
        typer.Option("--tap", help="Create a TAP (IFF_VNET_HDR) for a VM, same options."),
    ] = None,
    controller: Annotated[
        list[str] | None, typer.Option("--controller", help="Active controller, tcp:HOST:PORT.")
    ] = None,
    listen: Annotated[
        list[str] | None,
        typer.Option("--listen", help="Passive OpenFlow listener, ptcp:PORT[:IP]."),
    ] = None,
    fail_mode: Annotated[
        str, typer.Option("--fail-mode", help="standalone or secure.")
    ] = "standalone",
    internal: Annotated[
        bool, typer.Option(help="Create the internal port (a TAP named after the switch).")
    ] = True,
    mac_aging: Annotated[float, typer.Option(help="MAC aging time, seconds.")] = 300.0,
    port_security: Annotated[
        str,
        typer.Option(
            "--port-security",
            help="on or off: the default for every port whose spec does not say port_security= "
            "itself (which wins). on -- source MAC locked to the first one seen, no promiscuous "
            "mode -- suits workloads' ports; off suits a plain OpenFlow switch under an outside "
            "controller, whose frames may carry any source MAC. Default: on.",
        ),
    ] = "on",
    datapath_id: Annotated[
        str | None,
        typer.Option(
            "--datapath-id",
            help="OpenFlow datapath id: 16 hex digits (as Open vSwitch's "
            "other-config:datapath-id) or 0x-prefixed hex. Default: derived from --name.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run a switch until SIGTERM/Ctrl-C."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    if fail_mode not in (FailMode.STANDALONE, FailMode.SECURE):
        fail(f"--fail-mode: expected standalone or secure, got {fail_mode!r}")
    if port_security not in ("on", "off"):
        fail(f"--port-security: expected on or off, got {port_security!r}")
    secure = port_security == "on"
    dpid = None
    if datapath_id is not None:
        try:
            dpid = _datapath_id(datapath_id)
        except ValueError as e:
            fail(f"--datapath-id: {e}")
    try:
        cfgs = [parse_port_spec(s, port_security=secure) for s in port or []]
        cfgs += [parse_port_spec(s, kind="tap", port_security=secure) for s in tap or []]
    except PortConfigError as e:
        fail(f"--port: {e}")
    mgmt, ctl = _paths(name)
    os.makedirs(os.path.dirname(mgmt), exist_ok=True)
    sw = Switch(name, fail_mode=fail_mode, mac_aging=mac_aging, now=time.monotonic(), dpid=dpid)
    runner = Runner(sw)
    try:
        agent = Agent(sw, controller or [], [*(listen or []), f"punix:{mgmt}"])
    except ValueError as e:
        fail(str(e))
    try:
        if internal:
            runner.add_port(parse_port_spec(f"{name},kind=internal,port_security=false"))
        for c in cfgs:
            runner.add_port(c)
    except SwitchError as e:
        runner.close()
        fail(str(e))
    server = ControlServer(runner, ctl, port_security=secure, info=agent.status)
    asyncio.run(_serve(runner, agent, server, name))


async def _serve(runner: Runner, agent: Agent, ctl: ControlServer, name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner.on_flows_removed = agent.flows_removed
    await runner.start()
    try:
        await agent.start()
        await ctl.start()
    except OSError as e:
        runner.close()
        fail(f"cannot listen: {e}")
    ports = agent.bound_ports()
    err.print(
        f"vnet switch {name}: {len(runner.switch.ports)} ports"
        + (f", OpenFlow on tcp port {', '.join(map(str, ports))}" if ports else "")
        + f", control {ctl.path}",
        highlight=False,
    )
    try:
        await stop.wait()
    finally:
        await agent.stop()
        ctl.close()
        runner.close()


def _ctl(switch: str, cmd: str, **args: Any) -> Any:
    mgmt, ctl = _find(switch)
    if ctl is None:
        fail(
            f"{switch!r} is an Open vSwitch chassis ({mgmt.removeprefix('unix:')}): "
            "use ovs-vsctl and ovs-appctl, or vnet ofctl show/dump-flows",
            1,
        )
    try:
        return request(ctl, cmd, **args)
    except (FileNotFoundError, ConnectionRefusedError):
        fail(f"switch {switch!r} is not running (no {ctl}, and no lab has it)", 1)
    except SwitchError as e:
        fail(str(e))


@switch_app.command("add-port")
def switch_add_port(
    name: Annotated[str, typer.Argument(help="Switch name.")],
    spec: Annotated[str, typer.Argument(help="NAME[,option=value...] as for --port.")],
    tap: Annotated[bool, typer.Option("--tap", help="Create a TAP for a VM.")] = False,
) -> None:
    """Attach a port to a running switch."""
    try:
        parse_port_spec(spec)
    except PortConfigError as e:
        fail(str(e))
    r = _ctl(name, "add-port", spec=spec, kind="tap" if tap else "netdev")
    out.print(f"{r['name']}: ofport {r['ofport']}", highlight=False)


@switch_app.command("del-port")
def switch_del_port(name: str, port: str) -> None:
    """Detach a port from a running switch."""
    r = _ctl(name, "del-port", name=port)
    out.print(f"{r['name']}: removed (was ofport {r['ofport']})", highlight=False)


@switch_app.command("show")
def switch_show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Ports, their state, counters and drops of a running switch."""
    r = _ctl(name, "show")
    if as_json:
        out.print_json(json.dumps(r))
        return
    out.print(
        f"{r['name']} dpid {r['dpid']} fail-mode {r['fail_mode']}"
        f"{' (fail-open)' if r['fail_open'] else ''}; flows {r['flows']}, MACs {r['macs']}, "
        f"controllers {r['controllers']['connected']}/{r['controllers']['configured']}; "
        f"port security {r.get('port_security', 'on')} by default",
        highlight=False,
    )
    of = r.get("openflow")
    if of:
        line = f"openflow: connects {of['connects']}, disconnects {of['disconnects']}"
        last = of["last_disconnect"]
        if last:
            ago = time.time() - last["at"]
            line += f"; last {last['controller']} {ago:.0f} s ago: {last['reason']}"
        out.print(line, highlight=False)
    t = Table("ofport", "name", "link", "vlan", "security", "rx pkts", "tx pkts", "drops")
    for p in r["ports"]:
        c = p["config"]
        vlan = f"tag {c['tag']}" if c["vlan_mode"] == "access" else f"trunk {c['trunks'] or 'all'}"
        sec = "on" if c["port_security"] else "off"
        st = p["stats"]
        drops = st["rx_dropped"] + st["tx_dropped"]
        t.add_row(
            str(p["ofport"]),
            p["name"],
            p["link"],
            vlan,
            sec,
            str(st["rx_packets"]),
            str(st["tx_packets"]),
            str(drops),
        )
    out.print(t)
    if r["drops"]:
        out.print("drops: " + ", ".join(f"{k}={v}" for k, v in r["drops"].items()), highlight=False)


# -- ofctl -------------------------------------------------------------------------------------
def _client(target: str) -> OFClient:
    path = target if ":" in target else _find(target)[0]
    try:
        return OFClient(path)
    except (FileNotFoundError, ConnectionRefusedError):
        fail(
            f"cannot connect to {target!r} ({path}): no such switch is running here or in a lab",
            1,
        )
    except OSError as e:
        fail(f"cannot connect to {target!r}: {e}", 1)
    raise AssertionError


def _run(target: str, fn: Any) -> Any:
    with _client(target) as c:
        try:
            return fn(c)
        except OFClientError as e:
            fail(str(e), 1)
        except OFError as e:
            fail(str(e))


def _match_arg(text: str) -> Match | None:
    try:
        return parse_match(text) if text else None
    except (FlowSyntaxError, FieldError) as e:
        fail(str(e))
    return None


@ofctl_app.command("show")
def ofctl_show(switch: str) -> None:
    """Features and ports."""

    def go(c: OFClient) -> None:
        (feat,) = c.transact(parser.OFPFeaturesRequest(DP))
        out.print(f"OFPT_FEATURES_REPLY (OF1.3): dpid:{feat.datapath_id:016x}", highlight=False)
        out.print(f"n_tables:{feat.n_tables}, n_buffers:{feat.n_buffers}", highlight=False)
        for p in c.multipart(parser.OFPPortDescStatsRequest(DP, 0)):
            no = "LOCAL" if p.port_no == ofp.OFPP_LOCAL else str(p.port_no)
            state = "LINK_DOWN" if p.state & ofp.OFPPS_LINK_DOWN else "LIVE"
            cfg = "PORT_DOWN" if p.config & ofp.OFPPC_PORT_DOWN else "0"
            name = p.name.decode() if isinstance(p.name, bytes) else p.name
            out.print(f" {no}({name.rstrip(chr(0))}): addr:{p.hw_addr}", highlight=False)
            out.print(f"     config:     {cfg}\n     state:      {state}", highlight=False)

    _run(switch, go)


@ofctl_app.command("dump-flows")
def ofctl_dump_flows(
    switch: str, match: Annotated[str, typer.Argument(help="Only flows this match covers.")] = ""
) -> None:
    """Flow entries with counters, as ovs-ofctl prints them."""
    m = _match_arg(match)

    def go(c: OFClient) -> None:
        req = parser.OFPFlowStatsRequest(DP, match=match_to_ofp(m) if m else parser.OFPMatch())
        now = time.monotonic()
        for st in c.multipart(req):
            st.command = 0
            flow = flow_from_ofp(st)
            r = Rule(flow, now - st.duration_sec - st.duration_nsec / 1e9)
            r.packet_count, r.byte_count = st.packet_count, st.byte_count
            out.print(" " + format_dump(r, now), highlight=False, soft_wrap=True)

    _run(switch, go)


@ofctl_app.command("add-flow")
def ofctl_add_flow(switch: str, flow: str) -> None:
    """Add a flow (ovs-ofctl syntax)."""
    try:
        f = parse_flow(flow).flow
    except (FlowSyntaxError, FieldError) as e:
        fail(str(e))
    _run(switch, lambda c: c.transact(flow_mod_to_ofp(f)))


@ofctl_app.command("add-flows")
def ofctl_add_flows(
    switch: str,
    file: Annotated[str, typer.Argument(help="a flow per line (ovs-ofctl syntax); - for stdin")],
) -> None:
    """Add the flows of a file, a flow per line (blank lines and # comments skipped).

    Every line is parsed before anything is sent: a bad one is named (FILE:LINE) and
    no flow is added.  The flows then go over one connection, in order; one the switch
    refuses is named and stops the rest (those before it stay, as with ovs-ofctl)."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as e:
        fail(f"{file}: {e.strerror}")
    flows = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            flows.append((no, parse_flow(line.strip()).flow))
        except (FlowSyntaxError, FieldError) as e:
            fail(f"{file}:{no}: {e}")

    def go(c: OFClient) -> None:
        for no, f in flows:
            try:
                c.transact(flow_mod_to_ofp(f))
            except OFClientError as e:
                fail(f"{file}:{no}: {e}", 1)

    _run(switch, go)


@ofctl_app.command("del-flows")
def ofctl_del_flows(switch: str, match: Annotated[str, typer.Argument()] = "") -> None:
    """Delete the flows a match covers (all without one)."""
    m = _match_arg(match)
    mod = parser.OFPFlowMod(
        DP,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=match_to_ofp(m) if m else parser.OFPMatch(),
    )
    _run(switch, lambda c: c.transact(mod))


@ofctl_app.command("dump-ports")
def ofctl_dump_ports(switch: str) -> None:
    """Port counters."""

    def go(c: OFClient) -> None:
        stats = c.multipart(parser.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY))
        out.print(f"OFPST_PORT reply (OF1.3): {len(stats)} ports", highlight=False)
        for s in stats:
            no = "LOCAL" if s.port_no == ofp.OFPP_LOCAL else str(s.port_no)
            out.print(
                f"  port {no:>5}: rx pkts={s.rx_packets}, bytes={s.rx_bytes}, drop={s.rx_dropped}, errs={s.rx_errors}\n"
                f"             tx pkts={s.tx_packets}, bytes={s.tx_bytes}, drop={s.tx_dropped}, errs={s.tx_errors}",
                highlight=False,
            )

    _run(switch, go)


@ofctl_app.command("dump-groups")
def ofctl_dump_groups(switch: str) -> None:
    """Group table."""

    def go(c: OFClient) -> None:
        for g in c.multipart(parser.OFPGroupDescStatsRequest(DP, 0)):
            out.print(
                " " + format_group(group_from_ofp(g.group_id, g.type, g.buckets)), highlight=False
            )

    _run(switch, go)


@ofctl_app.command("trace")
def ofctl_trace(
    switch: str,
    packet: Annotated[str, typer.Argument(help="in_port=1,tcp,nw_dst=...")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Trace a packet through the live tables of a running switch."""
    if ":" in switch:
        fail("trace needs a switch name (it uses the switch's control socket)")
    r = _ctl(switch, "trace", packet=packet)
    if as_json:
        out.print_json(json.dumps(r["trace"]))
    else:
        out.print(r["text"], highlight=False, soft_wrap=True)
