"""In-memory port devices: frames handed in by the caller, frames sent kept in a list.

For tests and simulation: no root, no file descriptor.  `capacity` bounds
what it holds, so a full queue is a refusal the switch counts, as on a real
device.  `MemoryTunnel` stands in for a tunnel port's sockets: it keeps the
whole outer IPv4 packets the switch sends, by destination, and answers the
path MTU it was given.
"""

from __future__ import annotations

from collections import deque

from ..port import Frame

__all__ = ["MemoryDevice", "MemoryTunnel", "split_outer"]


class MemoryDevice:
    def __init__(
        self,
        name: str,
        hw_addr: int = 0,
        mtu: int = 1500,
        vnet_hdr: bool = False,
        capacity: int = 1 << 16,
    ) -> None:
        self.name = name
        self.hw_addr = hw_addr
        self.mtu = mtu
        self.vnet_hdr = vnet_hdr
        self.capacity = capacity
        self.inbox: deque[Frame] = deque()
        self.sent: list[Frame] = []
        self.up = True
        self.closed = False

    def fileno(self) -> int | None:
        return None

    def recv_batch(self, limit: int) -> list[Frame]:
        out: list[Frame] = []
        while self.inbox and len(out) < limit:
            out.append(self.inbox.popleft())
        return out

    def send(self, hdr: bytes, frame: bytes) -> bool:
        if self.closed or len(self.sent) >= self.capacity:
            return False
        self.sent.append((hdr, frame))
        return True

    def frames(self) -> list[bytes]:
        """Frames sent so far (and forget them)."""
        out = [f for _, f in self.sent]
        self.sent.clear()
        return out

    def flush(self) -> None:
        pass  # every send is complete when it returns

    def link_up(self) -> bool:
        return self.up and not self.closed

    def close(self) -> None:
        self.closed = True


class MemoryTunnel:
    """A tunnel device whose sockets are a list: what `send_ip` got, by destination."""

    vnet_hdr = False
    hw_addr = 0
    mtu = 1500

    def __init__(self, name: str, path_mtu: int = 1500) -> None:
        self.name = name
        self.sent: list[tuple[int, bytes]] = []
        self.mtu_to = path_mtu

    def fileno(self) -> int | None:
        return None

    def recv_batch(self, limit: int) -> list[Frame]:
        return []

    def send(self, hdr: bytes, frame: bytes) -> bool:
        return False

    def send_ip(self, dst: int, packet: bytes) -> bool:
        self.sent.append((dst, packet))
        return True

    def path_mtu(self, dst: int) -> int:
        return self.mtu_to

    def take(self) -> list[tuple[int, bytes]]:
        """Packets sent so far (and forget them)."""
        out, self.sent = self.sent, []
        return out

    def flush(self) -> None:
        pass  # every send is complete when it returns

    def link_up(self) -> bool:
        return True

    def close(self) -> None:
        pass


def split_outer(packet: bytes) -> tuple[str, int, bytes] | None:
    """An outer IPv4 packet as a tunnel port's socket reads it: (kind, source, payload).

    UDP to 4789 is VXLAN and to 6081 Geneve (the payload is the UDP payload);
    IP protocol 47 is NVGRE (the socket reads the whole packet); else None.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0xF) * 4
    src = int.from_bytes(packet[12:16], "big")
    if packet[9] == 47:
        return "nvgre", src, packet
    if packet[9] != 17 or len(packet) < ihl + 8:
        return None
    kind = {4789: "vxlan", 6081: "geneve"}.get(int.from_bytes(packet[ihl + 2 : ihl + 4], "big"))
    return None if kind is None else (kind, src, packet[ihl + 8 :])
