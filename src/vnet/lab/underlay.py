"""The simulated underlay: outer packets between the memory tunnels of switches
in one process, delivered by destination address as the kernel's socket would
hand them to the receiving chassis' tunnel port.  Shared by the simulated lab
(`sim`) and the firewall's proof (`verify`)."""

from __future__ import annotations

from collections.abc import Iterable

from ..datapath.ports.memory import MemoryTunnel, split_outer
from ..datapath.switch import Switch
from ..model.objects import tunnel_iface

__all__ = ["carry"]


def carry(
    switches: Iterable[Switch],
    underlay: dict[int, Switch],
    now: float | None = None,
    counts: dict[str, int] | None = None,
) -> bool:
    """One round of the underlay between memory tunnels: each outer packet to the
    tunnel port of the chassis its destination address belongs to (at `now`,
    else the receiver's clock), counted per receiver in `counts`; a packet to
    nobody is lost on the wire.  Whether anything was sent."""
    moved = False
    for sw in switches:
        for port in list(sw.ports.values()):
            if not isinstance(port.device, MemoryTunnel):
                continue
            for dst, packet in port.device.take():
                moved = True
                peer, outer = underlay.get(dst), split_outer(packet)
                if peer is None or outer is None:
                    continue
                kind, src, payload = outer
                into = peer.port_by_name(tunnel_iface(kind))
                if into is not None:
                    if counts is not None:
                        counts[peer.name] = counts.get(peer.name, 0) + 1
                    peer.receive_tunnel_batch(
                        into, [(src, payload)], peer.now if now is None else now
                    )
    return moved
