"""Many chassis joined by tunnels, simulated: the controller's flows on real vnet switches.

The underlay is a list (`SimLab` hands each outer packet to the chassis it is
sent to), everything else is real: the model, the compiler's tunnel flows,
the switches' encapsulation and decapsulation.  The namespace version of the
same topology is tests/integration/test_overlay_lab.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.l2 import ARP, Ether

from vnet.compiler import localize, table
from vnet.lab.sim import SimLab
from vnet.model.rules import ModelError
from vnet.pipeline.ofctl import format_flow

ROOT = Path(__file__).resolve().parents[2]


def topology(encaps: tuple[str, str, str]) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples/three-chassis.yaml").read_text())
    doc.pop("encap")
    for ch, kind in zip(doc["chassis"], encaps, strict=True):
        ch["encap"] = kind
    return doc


def tenant_of(lab: SimLab) -> dict[int, str]:
    """Each port's MAC -> its tenant's name."""
    st = lab.ctl.nb.state()
    return {
        int(p.mac.replace(":", ""), 16): st.get("tenant", p.tenant).name for p in st.all("port")
    }


def recording(lab: SimLab) -> dict[str, list[bytes]]:
    """Every frame each workload receives from now on."""
    got: dict[str, list[bytes]] = {}
    for name, h in lab.hosts.items():
        seen = got.setdefault(name, [])

        def receive(frame: bytes, _orig: Any = h.receive, _seen: list[bytes] = seen) -> None:
            _seen.append(frame)
            _orig(frame)

        h.receive = receive  # type: ignore[method-assign]
    return got


MIXED = [("geneve",) * 3, ("vxlan",) * 3, ("nvgre",) * 3, ("geneve", "vxlan", "nvgre")]


@pytest.mark.parametrize("encaps", MIXED, ids=["geneve", "vxlan", "nvgre", "mixed"])
def test_two_tenants_with_one_subnet_on_three_chassis(encaps: tuple[str, str, str]) -> None:
    lab = SimLab(topology(encaps))
    frames = recording(lab)
    owner = tenant_of(lab)
    for tenant in ("blue", "red"):
        for a in (1, 2, 3):
            for b in (1, 2, 3):
                if a != b:
                    assert lab.ping(f"{tenant}-{a}", f"10.0.0.1{b}", 2) == 2, (tenant, a, b)
    assert lab.ping("batch-1", "10.0.1.12", 2) == 2
    # nothing of one tenant ever reached the other's workloads
    for name, got in frames.items():
        mine = owner[lab.hosts[name].mac]
        assert got and all(owner[int.from_bytes(f[6:12], "big")] == mine for f in got), name
    # the tunnels carried it: every chassis received from the underlay
    assert all(lab.underlay_rx.get(h, 0) > 0 for h in ("hv1", "hv2", "hv3"))


def test_broadcast_reaches_only_chassis_of_its_network() -> None:
    lab = SimLab(topology(("geneve",) * 3))
    frames = recording(lab)
    lab.underlay_rx.clear()
    h = lab.hosts["batch-1"]
    who = Ether(src=h.port.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        hwsrc=h.port.mac, psrc="10.0.1.11", pdst="10.0.1.99"
    )  # nobody has it: the switch cannot answer, so it floods
    h.send(bytes(who))
    lab.pump()
    assert lab.underlay_rx == {"hv2": 1}  # one copy, to the only other chassis of `batch`
    assert [len(frames[n]) for n in ("batch-2", "red-2", "blue-2", "red-3")] == [1, 0, 0, 0]
    # a flood that came out of a tunnel never goes back into one
    assert all(
        p.stats.tx_packets == 0 for p in lab.switches["hv2"].ports.values() if p.config.tunnel
    )


def test_unicast_to_a_remote_port_is_one_packet_to_its_chassis() -> None:
    lab = SimLab(topology(("geneve",) * 3))
    assert lab.ping("blue-1", "10.0.0.13", 1) == 1  # resolves, then one echo each way
    lab.underlay_rx.clear()
    assert lab.ping("blue-1", "10.0.0.13", 3) == 3
    assert lab.underlay_rx == {"hv3": 3, "hv1": 3}


def test_deployment_encapsulation_and_mtu_from_the_underlay() -> None:
    doc = yaml.safe_load((ROOT / "examples/three-chassis.yaml").read_text())
    doc["encap"] = "vxlan"
    doc["chassis"][2]["encap"] = "geneve"
    doc["chassis"][1]["underlay_mtu"] = 9000
    lab = SimLab(doc, attach=False)
    st = lab.ctl.nb.state()
    assert [c.encap for c in st.all("chassis")] == ["vxlan", "vxlan", "geneve"]
    # the narrowest chassis sets every network's MTU: Geneve with vnet's option, 1500 - 58
    assert {n.mtu for n in st.all("network")} == {1442}
    doc["networks"][0]["mtu"] = 1443
    with pytest.raises(ModelError) as e:
        SimLab(doc, attach=False)
    assert e.value.loc == ("networks", 0, "mtu") and "at most 1442" in e.value.message
    doc["networks"][0]["mtu"] = 1400
    doc["encap"] = "stt"
    with pytest.raises(ModelError) as e:
        SimLab(doc, attach=False)
    assert e.value.loc == ("encap",)


def test_migration_rebinds_keeps_identity_and_announces() -> None:
    lab = SimLab(topology(("geneve",) * 3))
    assert lab.ping("blue-1", "10.0.0.12", 1) == 1
    before = lab.ctl.nb.get("port", "blue-2", "blue")
    frames = recording(lab)
    asyncio.run(migrate(lab, "blue-2", "hv3"))
    after = lab.ctl.nb.get("port", "blue-2", "blue")
    assert after.chassis == lab.ctl.nb.get("chassis", "hv3").id
    assert (after.mac, after.ips, after.tunnel_key) == (before.mac, before.ips, before.tunnel_key)
    assert lab.hosts["blue-2"].switch is lab.switches["hv3"]
    # the new chassis announced it: every peer in its network got one gratuitous ARP
    assert lab.ctl.announced == 1
    garp = [ARP(f[14:]) for f in frames["blue-1"] if f[12:14] == b"\x08\x06"]
    assert [(a.op, a.psrc, a.pdst, a.hwsrc) for a in garp] == [
        (1, "10.0.0.12", "10.0.0.12", before.mac)
    ]
    assert not [f for f in frames["red-1"] if f[12:14] == b"\x08\x06"]  # nor another tenant
    for a in ("blue-1", "blue-3"):
        assert lab.ping(a, "10.0.0.12", 2) == 2
    lab.underlay_rx.clear()
    assert lab.ping("blue-3", "10.0.0.12", 1) == 1
    assert lab.underlay_rx == {}  # now neighbours on hv3: nothing crosses the underlay
    with pytest.raises(ModelError) as e:
        lab.ctl.nb.migrate("blue-2", "hv9", "blue")
    assert e.value.loc == ("to",)


async def migrate(lab: SimLab, port: str, to: str) -> None:
    lab.ctl.nb.migrate(port, to, "blue")
    await lab.refresh()
    lab.pump()


def test_a_port_still_plugged_on_its_old_chassis_keeps_its_ingress_there() -> None:
    lab = SimLab(topology(("geneve",) * 3))
    st = lab.ctl.nb.state()
    hv2 = st.find("chassis", "hv2")
    port = lab.ctl.nb.get("port", "blue-2", "blue")
    ofports = {"vtep-geneve": 1, port.iface: 7}
    lab.ctl.nb.migrate("blue-2", "hv3", "blue")
    st = lab.ctl.nb.state()
    text = [format_flow(f) for f in localize(lab.ctl.compiler.compile(st), st, hv2, ofports)]
    ingress = [t for t in text if "in_port=7" in t]
    assert len(ingress) == 1 and "goto_table:1" in ingress[0]
    key = f"reg7={hex(port.tunnel_key)}"
    egress = [
        t
        for t in text
        if t.startswith(f"table={table('phy_out')},") and key in t and "metadata=0x1," in t
    ]
    assert egress and all("192.168.100.3->tun_dst" in t for t in egress)
