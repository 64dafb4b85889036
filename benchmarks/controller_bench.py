"""Controller: compile time, API-to-flow latency, full sync of a fresh switch.

* compile: the model (10 ports per network, one chassis) -> logical flows ->
  the chassis' flows, for 100 / 1,000 / 10,000 ports; beside it, in the same
  run, a trivial baseline: printing the same flows as ovs-ofctl text (what a
  controller that keeps flows as text must at least do); then the
  incremental recompile after one port changes.
* routers: 1,000 routers x 10 subnets (a network and a port each, the
  routers spread over 10 chassis) compiled, then localized for one chassis,
  with the same baseline; then one route added to one router, recompiled.
* API -> first flow: a port created through the REST API (HTTP on loopback,
  uvicorn) until its first flow is in the switch's table; p50/p99 over 200.
* full sync: a fresh vnet switch attached to a controller holding 1,000
  ports, in-process and over OpenFlow 1.3 on loopback (the switch's passive
  listener), beside the time to install the same flows directly.

No root needed.  Usage: `python benchmarks/controller_bench.py [--quick] [--routers-only]`.
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
from vnet.model.objects import (
    Chassis,
    FixedIP,
    Network,
    Port,
    Route,
    Router,
    RouterInterface,
    Subnet,
    Tenant,
    tunnel_iface,
)
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


def router_model(n_routers: int, per_router: int = 10, n_chassis: int = 10) -> State:
    """`n_routers` routers in one tenant, each with `per_router` networks of one /24 and
    one port (on chassis c<router % n_chassis>), a default route and admission's fields
    filled in (MACs, keys), as the compiler sees an admitted model."""
    objs: list[Any] = [Tenant(id="t", name="t")]
    for c in range(n_chassis):
        dpid = f"{datapath_id(f'hv{c}'):016x}"
        objs.append(Chassis(id=f"c{c}", name=f"hv{c}", datapath_id=dpid,
                            underlay=f"192.0.2.{c + 1}", encap="geneve"))  # fmt: skip
    for r in range(n_routers):
        itfs = []
        for j in range(per_router):
            k = r * per_router + j
            net = f"n{k}"
            cidr = f"10.{k >> 8 & 255}.{k & 255}.0/24"
            objs.append(Network(id=net, name=net, tenant="t", segment_id=k + 1))
            objs.append(Subnet(id=f"s{k}", name=f"s{k}", tenant="t", network=net, cidr=cidr))
            objs.append(Port(
                id=f"p{k:06d}", name=f"p{k}", tenant="t", network=net, chassis=f"c{r % n_chassis}",
                mac=f"02:00:00:{k >> 16 & 255:02x}:{k >> 8 & 255:02x}:{k & 255:02x}",
                fixed_ips=[FixedIP(subnet=f"s{k}", ip=cidr.replace(".0/24", ".10"))], tunnel_key=1,
            ))  # fmt: skip
            itfs.append(RouterInterface(
                subnet=f"s{k}", mac=f"0a:00:00:{k >> 16 & 255:02x}:{k >> 8 & 255:02x}:{k & 255:02x}",
                tunnel_key=32767,
            ))  # fmt: skip
        first = f"10.{r * per_router >> 8 & 255}.{r * per_router & 255}.1"
        objs.append(Router(id=f"r{r}", name=f"r{r}", tenant="t", tunnel_key=r + 1,
                           interfaces=itfs, routes=[Route(cidr="0.0.0.0/0", nexthop=first)]))  # fmt: skip
    return State.of(objs, 1)


def bench_router_compile(n_routers: int, per_router: int = 10) -> None:
    print(f"\n== compile: {n_routers:,} routers x {per_router} subnets (a network and a port "
          f"each, on 10 chassis) ==")  # fmt: skip
    st = router_model(n_routers, per_router)
    ch = st.get("chassis", "c0")
    ofports = {p.iface: i for i, p in enumerate(st.all("port"), 1) if p.chassis == ch.id}
    ofports |= {tunnel_iface("geneve"): 60000}
    comp = Compiler()
    memo: Memo = {}
    t0 = time.perf_counter()
    lflows = comp.compile(st)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    flows = localize(lflows, st, ch, ofports, memo)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    _ = [format_flow(lf.flow) for lf in lflows]
    t_text = time.perf_counter() - t0
    r = st.get("router", "r0")
    st2 = st.apply([])
    routes = [*r.routes, Route(cidr="192.168.0.0/16", nexthop=r.routes[0].nexthop)]
    st2.objects["router"][r.id] = r.changed(routes=routes)
    t0 = time.perf_counter()
    lflows2 = comp.compile(st2)
    t1 = time.perf_counter()
    localize(lflows2, st2, ch, ofports, memo)
    t_inc, t_inc_local = t1 - t0, time.perf_counter() - t1
    print(f"  logical flows {len(lflows):,}: compile {t_compile:.2f} s; printing them as text "
          f"{t_text:.2f} s ({t_compile / t_text:.1f}x)")  # fmt: skip
    print(f"  flows on chassis hv0 ({len(ofports) - 1} ports, {n_routers // 10} routers and "
          f"every network of theirs): {len(flows):,}, localize {t_local:.2f} s")  # fmt: skip
    print(f"  one route added to one router: compile {t_inc:.3f} s, localize {t_inc_local:.3f} s")


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
    ap.add_argument("--routers-only", action="store_true", help="the routers' compile only")
    a = ap.parse_args()
    if a.routers_only:
        bench_router_compile(100 if a.quick else 1000)
        return
    bench_compile([100, 1000] if a.quick else [100, 1000, 10000])
    bench_router_compile(100 if a.quick else 1000)
    bench_latency(50 if a.quick else 200)
    bench_full_sync(1000)


if __name__ == "__main__":
    main()
