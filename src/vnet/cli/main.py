"""`vnet` command line: thin adapters over library calls.

Bad input exits with status 2 and a message naming the offending token (and its
line and column for flow text); nothing is half-done.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..packet import decode, extract
from ..packet.pcap import PcapError, read_frames
from ..pipeline import FlowSyntaxError, Pipeline, Tracer, apply, parse_packet
from ..pipeline.ofctl import parse_flow_file
from .agent import agent_app
from .bfd import bfd_app
from .common import console, fail
from .controller import controller_app, port_app, register
from .ct import ct_app
from .demo import run_demo
from .flowlog import register_flow_log
from .lab import lab_app
from .lab_demo import run_lab_demo
from .switch import ofctl_app, switch_app
from .verify import register_verify

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="vnet: software-defined virtual networking."
)
packet_app = typer.Typer(no_args_is_help=True, help="Decode and inspect frames.")
flows_app = typer.Typer(
    no_args_is_help=True,
    help="Work with flow tables in ovs-ofctl syntax; the firewall's connection log.",
)
app.add_typer(packet_app, name="packet")
app.add_typer(flows_app, name="flows")
app.add_typer(switch_app, name="switch")
app.add_typer(ofctl_app, name="ofctl")
app.add_typer(ct_app, name="ct")
app.add_typer(bfd_app, name="bfd")
app.add_typer(controller_app, name="controller")
app.add_typer(agent_app, name="agent")
app.add_typer(lab_app, name="lab")
app.add_typer(port_app, name="port")
register(app)
register_flow_log(flows_app)
register_verify(app)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("vnet")
        except PackageNotFoundError:  # run from a source tree that was never installed
            v = "unknown (not installed)"
        print(f"vnet {v}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """vnet: software-defined virtual networking."""


def _hex_frame(text: str) -> bytes:
    clean = "".join(text.split()).replace(":", "")
    if clean.startswith(("0x", "0X")):
        clean = clean[2:]
    try:
        return bytes.fromhex(clean)
    except ValueError:
        bad = next(
            (i for i, c in enumerate(clean) if c not in "0123456789abcdefABCDEF"), len(clean) - 1
        )
        fail(f"invalid hex frame: character {clean[bad]!r} at position {bad + 1}")


@packet_app.command("decode")
def packet_decode(
    frame: Annotated[str | None, typer.Argument(help="The frame as hex.")] = None,
    pcap: Annotated[
        Path | None, typer.Option("--pcap", help="Decode every frame of a pcap/pcapng file.")
    ] = None,
) -> None:
    """Print a frame's layers as JSON."""
    if (frame is None) == (pcap is None):
        fail("give a hex FRAME or --pcap FILE (one of them)")
    if pcap is not None:
        try:
            frames = list(read_frames(pcap))
        except (OSError, PcapError) as e:
            fail(str(e))
        out = [decode(f).as_dict() for f in frames]
        print(json.dumps(out, indent=2))
        return
    assert frame is not None
    print(json.dumps(decode(_hex_frame(frame)).as_dict(), indent=2))


@flows_app.command("trace")
def flows_trace(
    flowfile: Annotated[Path, typer.Argument(help="Flow table, one ovs-ofctl flow per line.")],
    packet: Annotated[
        str | None, typer.Argument(help="The packet as fields: 'in_port=1,tcp,nw_dst=...'.")
    ] = None,
    hex_frame: Annotated[
        str | None, typer.Option("--hex", help="The packet as a hex frame instead.")
    ] = None,
    in_port: Annotated[int, typer.Option("--in-port", help="Ingress port for --hex.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Trace a packet through a flow table, as ofproto/trace does."""
    if (packet is None) == (hex_frame is None):
        fail("give a PACKET description or --hex FRAME (one of them)")
    try:
        flows = parse_flow_file(flowfile)
    except OSError as e:
        fail(f"{flowfile}: {e.strerror}")
    except FlowSyntaxError as e:
        fail(f"{flowfile}:{e.line}:{e.column}: {e.message} (token {e.token!r})")
    pipeline = Pipeline()
    pipeline.add_flows(flows)
    frame: bytes | None = None
    if hex_frame is not None:
        frame = _hex_frame(hex_frame)
        key = extract(frame, in_port)
    else:
        assert packet is not None
        try:
            key = parse_packet(packet)
        except FlowSyntaxError as e:
            fail(f"packet, column {e.column}: {e.message} (token {e.token!r})")
    tracer = Tracer(flowfile.name)
    decision = pipeline.translate(key, tracer=tracer)
    if as_json:
        out = tracer.as_dict()
        if frame is not None:
            out["outputs"] = [
                {"action": list(map(str, op)), "frame": fr.hex()}
                for op, fr in apply(frame, key, decision.odp)
            ]
        print(json.dumps(out, indent=2))
        return
    print(tracer.format())
    if frame is not None:
        for op, fr in apply(frame, key, decision.odp):
            print(f"{op[0]} {op[1] if len(op) > 1 else ''}: {fr.hex()}")


@app.command("demo")
def demo(
    sim: Annotated[bool, typer.Option("--sim", help="Simulate in-process, even as root.")] = False,
    pipeline: Annotated[
        bool,
        typer.Option("--pipeline", help="Only the flow-table demo: decode, trace, no network."),
    ] = False,
    switch: Annotated[
        str, typer.Option("--switch", help="vnet, or ovs for Open vSwitch (as root)")
    ] = "vnet",
) -> None:
    """Two tenants on one address plan: bring them up, ping, trace, tear down."""
    if switch not in ("vnet", "ovs"):
        fail(f"--switch {switch!r}: expected vnet or ovs")
    if pipeline:
        run_demo(console())
        return
    if not run_lab_demo(console(), sim=sim, switch=switch):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
