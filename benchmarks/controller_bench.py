"""Controller: compile time, API-to-flow latency, full sync of a fresh switch.

* compile: the model (10 ports per network, one chassis) -> logical flows ->
  the chassis' flows, for 100 / 1,000 / 10,000 ports; beside it, in the same
  run, a trivial baseline: printing the same flows as ovs-ofctl text (what a
  controller that keeps flows as text must at least do); then the
  incremental recompile after one port changes.
* API -> first flow: a port created through the REST API (HTTP on loopback,
  uvicorn) until its first flow is in the switch's table; p50/p99 over 200.
* full sync: a fresh vnet switch attached to a controller holding 1,000
  ports, in-process and over OpenFlow 1.3 on loopback (the switch's passive
  listener), beside the time to install the same flows directly.

No root needed.  Usage: `python benchmarks/controller_bench.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import zlib
from typing import Any

from vnet.client import Client
from vnet.compiler import Compiler, Memo, localize
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ids import datapath_id
from vnet.model import State
from vnet.model.objects import Chassis, FixedIP, Network, Port, Subnet, Tenant
from vnet.ofp.agent import Agent
from vnet.ofp.channel import connect
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import format_flow
from vnet.store import Op, SqliteStore
from vnet.testing.served import Served


def model(n_ports: int) -> State:
    dpid = f"{datapath_id('hv1'):016x}"
    objs: list[Any] = [Tenant(id="t", name="t"), Chassis(id="c", name="hv1", datapath_id=dpid)]
    for n in range(max(1, n_ports // 10)):
        objs.append(Network(id=f"n{n}", name=f"n{n}", tenant="t", segment_id=n + 1))
        objs.append(
            Subnet(id=f"s{n}", name=f"s{n}", tenant="t", network=f"n{n}", cidr="10.0.0.0/24")
        )
        for i in range(10):
            k = n * 10 + i
            objs.append(Port(
                id=f"p{k:06d}", name=f"p{k}", tenant="t", network=f"n{n}", chassis="c",
                mac=f"02:00:00:{k >> 16 & 255:02x}:{k >> 8 & 255:02x}:{k & 255:02x}",
                fixed_ips=[FixedIP(subnet=f"s{n}", ip=f"10.0.0.{i + 10}")], tunnel_key=i + 1,
            ))  # fmt: skip
    return State.of(objs, 1)


def bench_compile(sizes: list[int]) -> None:
    print("== compile: model -> logical flows -> flows for one chassis ==")
    print(
        f"{'ports':>7} {'flows':>8} {'compile s':>10} {'to text s':>10} {'ratio':>6} {'1 port s':>9}"
    )
    for n in sizes:
        st = model(n)
        ch = st.get("chassis", "c")
        ofports = {p.iface: i for i, p in enumerate(st.all("port"), 1)}
        comp = Compiler()
        memo: Memo = {}
        t0 = time.perf_counter()
        flows = localize(comp.compile(st), st, ch, ofports, memo)
        t_compile = time.perf_counter() - t0
        t0 = time.perf_counter()
        _ = [format_flow(f) for f in flows]
        t_text = time.perf_counter() - t0
        p = st.get("port", "p000000")
        st2 = st.apply([])
        st2.objects["port"][p.id] = p.changed(description="changed", admin_up=False)
        t0 = time.perf_counter()
        localize(comp.compile(st2), st2, ch, ofports, memo)
        t_inc = time.perf_counter() - t0
        print(
            f"{n:>7} {len(flows):>8} {t_compile:>10.3f} {t_text:>10.3f} {t_compile / t_text:>5.1f}x {t_inc:>9.3f}"
        )


def bench_latency(n: int) -> None:
    print(f"\n== API -> first flow on the switch, {n} ports ==")
    ctl = Controller(SqliteStore())
    ctl.nb.apply({"tenants": [{"name": "t"}], "chassis": [{"name": "hv1"}],
                  "networks": [{"name": "n", "tenant": "t"}],
                  "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/16"}],
                  "ports": [{"name": "anchor", "tenant": "t", "network": "n", "chassis": "hv1"}]})  # fmt: skip
    sw = Switch("hv1", fail_mode="secure")
    anchor = ctl.nb.get("port", "anchor")
    sw.add_port(PortConfig(anchor.iface, kind="memory"), MemoryDevice(anchor.iface))  # type: ignore[attr-defined]
    srv = Served(ctl).__enter__()
    srv.call(ctl.attach(LocalSouthbound(sw)))

    async def has_cookie(hi: int) -> bool:
        return any(r.flow.cookie >> 32 == hi for r in sw.pipeline.rules())

    lat = []
    with Client(f"http://127.0.0.1:{srv.port}") as c:
        for i in range(n):
            t0 = time.perf_counter()
            p = c.create("port", name=f"p{i}", tenant="t", network="n", chassis="hv1")
            hi = zlib.crc32(p["id"].encode())
            while not srv.call(has_cookie(hi)):
                time.sleep(0.0005)
            lat.append(time.perf_counter() - t0)
    srv.__exit__()
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, round(len(lat) * 0.99) - 1)]
    print(f"  p50 {p50 * 1e3:.1f} ms   p99 {p99 * 1e3:.1f} ms   (max {lat[-1] * 1e3:.1f} ms)")


def bench_full_sync(n: int) -> None:
    print(f"\n== full sync of a fresh switch, {n} ports on its chassis ==")
    st = model(n)
    store = SqliteStore()
    ctl = Controller(store)
    store.commit(
        [
            Op(o.kind, o.id, o.model_dump(mode="json", exclude={"revision"}))
            for k in st.objects
            for o in st.objects[k].values()
        ]
    )

    def fresh() -> Switch:
        sw = Switch("hv1", fail_mode="secure")
        for p in st.all("port"):
            sw.add_port(PortConfig(p.iface, kind="memory"), MemoryDevice(p.iface))
        return sw

    async def local() -> tuple[float, int]:
        sw = fresh()
        t0 = time.perf_counter()
        await ctl.attach(LocalSouthbound(sw))
        return time.perf_counter() - t0, len(sw.pipeline.rules())

    t_local, nflows = asyncio.run(local())
    sw = fresh()
    st_now = ctl.nb.state()
    flows = localize(
        Compiler().compile(st_now),
        st_now,
        st_now.get("chassis", "c"),
        {p.name: no for no, p in sw.ports.items()},
    )
    t0 = time.perf_counter()
    sw.commit([FlowMod(FlowModCommand.ADD, f) for f in flows])
    t_direct = time.perf_counter() - t0

    async def over_openflow() -> float:
        sw = fresh()
        agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
        await agent.start()
        c2 = Controller(store)
        t0 = time.perf_counter()
        ch = await connect(("tcp", "127.0.0.1", agent.bound_ports()[0]))
        await c2._attach_channel(ch)
        dt = time.perf_counter() - t0
        ch.close()
        await agent.stop()
        return dt

    t_of = asyncio.run(over_openflow())
    print(f"  {nflows} flows: in-process {t_local:.2f} s, over OpenFlow {t_of:.2f} s; "
          f"installing the same flows directly {t_direct:.2f} s ({t_of / t_direct:.1f}x)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 and 1,000 ports only, 50 API calls")
    a = ap.parse_args()
    bench_compile([100, 1000] if a.quick else [100, 1000, 10000])
    bench_latency(50 if a.quick else 200)
    bench_full_sync(1000)


if __name__ == "__main__":
    main()
