"""scapy as the checksum oracle: every checksum in a frame, recomputed by scapy alone."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import NoPayload, Packet, Padding, Raw

__all__ = ["bad_checksums"]


def _layers(p: Packet) -> list[Packet]:
    out = []
    while not isinstance(p, (NoPayload, Raw, Padding)):
        out.append(p)
        p = p.payload
    return out


def bad_checksums(frame: bytes) -> list[str]:
    """The checksum fields (layer.field) whose value scapy would not have written.

    Each is recomputed alone, the others kept, so an error is named where it is;
    a UDP checksum of 0 over IPv4 (none) is taken as it is."""
    bad = []
    for i, layer in enumerate(_layers(Ether(frame))):
        for name in ("chksum", "cksum"):
            if name not in {f.name for f in layer.fields_desc}:
                continue
            was = getattr(layer, name)
            if was == 0 and isinstance(layer, UDP) and isinstance(layer.underlayer, IP):
                continue
            copy = Ether(frame)
            setattr(_layers(copy)[i], name, None)
            again = getattr(_layers(Ether(bytes(copy)))[i], name)
            if again != was:
                bad.append(f"{layer.name}.{name}: {was:#06x}, scapy {again:#06x}")
    return bad
