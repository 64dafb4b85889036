"""The controller tells each vnet switch which of its flows stand down (vnet's
STAND_DOWN), and a gateway chassis cut from the controller and from every BFD peer
stops being the gateway the others fail over to.

`test_bfd_failover`'s rig: three vnet switches behind their agents on loopback, the
controller dialling them, their tunnels joined by the simulated underlay; hv2 and hv3
are the router's gateway chassis.  hv2 is cut from the controller (its agent stops)
and then from the underlay: hv1 and hv3 see it down and hv3 becomes active, while
hv2, isolated, keeps the gateway's flows installed but matching nothing; rejoined, it
matches them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from vnet.controller.service import Controller
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryTunnel
from vnet.lab.underlay import carry
from vnet.model.l3 import active_gateway
from vnet.model.objects import tunnel_iface
from vnet.ofp.agent import Agent
from vnet.packet.addr import ip4_int
from vnet.store import SqliteStore

from .test_bfd_failover import MODEL, UNDERLAY, _until


def test_the_cut_gateway_chassis_stands_down_and_the_next_takes_over() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(MODEL)
        switches: dict[str, Switch] = {}
        tunnels: dict[str, MemoryTunnel] = {}
        agents: dict[str, Agent] = {}
        for name, ip in UNDERLAY.items():
            sw = Switch(name, fail_mode="secure")
            tun = MemoryTunnel(tunnel_iface("geneve"))
            sw.add_port(PortConfig(tun.name, kind="geneve", local_ip=ip4_int(ip),
                                   port_security=False), tun)  # fmt: skip
            switches[name], tunnels[name] = sw, tun
            agents[name] = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
            await agents[name].start()
            port = agents[name].bound_ports()[0]
            ctl.nb.update("chassis", name, {"endpoint": f"tcp:127.0.0.1:{port}"})
        cut: set[str] = set()

        async def wire() -> None:
            while True:
                now = time.monotonic()
                for sw in switches.values():
                    sw.bfd.run(now)
                for n in cut:
                    tunnels[n].take()  # lost on the wire
                live = [switches[n] for n in sorted(set(UNDERLAY) - cut)]
                underlay = {ip4_int(UNDERLAY[n]): switches[n] for n in UNDERLAY if n not in cut}
                carry(live, underlay, now)
                await asyncio.sleep(0.01)

        def gateway() -> str | None:
            st = ctl.nb.state()
            return active_gateway(st.all("router")[0], st)

        def cookies(name: str) -> set[int]:
            return {r.flow.cookie for r in switches[name].pipeline.rules()}

        hv2, hv3 = switches["hv2"], switches["hv3"]
        await ctl.start()
        task = asyncio.create_task(wire())
        try:
            await _until(lambda: all(
                s["state"] == "up" and s["detect_time_us"] == 300_000
                for sw in switches.values() for s in sw.bfd.show()) and len(
                [s for sw in switches.values() for s in sw.bfd.show()]) == 6, 10.0)  # fmt: skip
            assert gateway() == "hv2"
            marked = ctl.stand_down(ctl.nb.state())
            assert set(marked) == {"hv2"} and marked["hv2"]
            await _until(lambda: hv2.pipeline.stand_down == marked["hv2"], 5.0)
            assert marked["hv2"] <= cookies("hv2")  # installed, and told which stand down
            assert switches["hv1"].pipeline.stand_down == hv3.pipeline.stand_down == set()
            await agents["hv2"].stop()  # cut from the controller: nothing reprograms it
            cut.add("hv2")  # and from every peer, its uplink untouched
            await _until(lambda: gateway() == "hv3" and hv2.bfd.isolated, 3.0)
            # hv2 keeps its flows (installed, counted) but they match nothing
            assert marked["hv2"] <= cookies("hv2")
            assert {r.flow.cookie for r in hv2.pipeline.asleep} == marked["hv2"]
            now = ctl.stand_down(ctl.nb.state())
            assert set(now) == {"hv3"}
            await _until(lambda: hv3.pipeline.stand_down == now["hv3"], 5.0)
            assert now["hv3"] <= cookies("hv3") and not hv3.bfd.isolated
            assert hv3.pipeline.asleep == set()
            cut.discard("hv2")  # the underlay is back: hv2 is not isolated any more
            await _until(lambda: not hv2.bfd.isolated, 5.0)
            assert hv2.pipeline.asleep == set()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await ctl.stop()
            for agent in agents.values():
                await agent.stop()

    asyncio.run(main())


def test_a_switch_gaining_or_losing_the_gateway_never_holds_it_unmarked() -> None:
    """The set a switch gains goes before its flows, the set it loses after them: at no
    moment does a switch hold an active gateway's flow outside its stand-down set."""

    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(MODEL)
        switches: dict[str, Switch] = {}
        agents: list[Agent] = []
        told: dict[str, list[tuple[frozenset[int], set[int]]]] = {}  # (set, installed then)
        for name, ip in UNDERLAY.items():
            sw = Switch(name, fail_mode="secure")
            tun = MemoryTunnel(tunnel_iface("geneve"))
            sw.add_port(PortConfig(tun.name, kind="geneve", local_ip=ip4_int(ip),
                                   port_security=False), tun)  # fmt: skip
            switches[name] = sw
            told[name] = []

            def record(cookies: frozenset[int], sw: Switch = sw) -> None:
                installed = {r.flow.cookie for r in sw.pipeline.rules()}
                told[sw.name].append((frozenset(cookies), installed))
                Switch.set_stand_down(sw, cookies)

            sw.set_stand_down = record  # type: ignore[method-assign]
            agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
            await agent.start()
            agents.append(agent)
            ctl.nb.update("chassis", name, {"endpoint": f"tcp:127.0.0.1:{agent.bound_ports()[0]}"})
        await ctl.start()
        try:
            first = ctl.stand_down(ctl.nb.state())["hv2"]
            await _until(lambda: switches["hv2"].pipeline.stand_down == first, 5.0)
            (sent, installed), *_ = told["hv2"]
            assert sent == first and not first & installed  # before its flows
            ctl.nb.report_bfd("hv1", {"hv2": "down", "hv3": "up"})  # hv2 fails over to hv3
            ctl.nb.report_bfd("hv3", {"hv2": "down", "hv1": "up"})
            then = ctl.stand_down(ctl.nb.state())
            assert set(then) == {"hv3"} and then["hv3"]
            await _until(lambda: switches["hv3"].pipeline.stand_down == then["hv3"], 5.0)
            await _until(lambda: switches["hv2"].pipeline.stand_down == set(), 5.0)
            for name, gateway in (("hv2", first), ("hv3", then["hv3"])):
                for sent, installed in told[name]:
                    # every gateway flow installed when a set came was in it
                    assert gateway & installed <= sent, (name, sent, installed)
            sent, installed = next(t for t in told["hv3"] if then["hv3"] <= t[0])
            assert not then["hv3"] & installed  # hv3's set came before its gateway flows
            (sent, installed) = told["hv2"][-1]
            assert sent == set() and not first & installed  # emptied once they were gone
        finally:
            await ctl.stop()
            for agent in agents:
                await agent.stop()

    asyncio.run(main())
