"""In-memory port device: frames handed in by the caller, frames sent kept in a list.

For tests and simulation: no root, no file descriptor.  `capacity` bounds
what it holds, so a full queue is a refusal the switch counts, as on a real
device.
"""

from __future__ import annotations

from collections import deque

from ..port import Frame

__all__ = ["MemoryDevice"]


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

    def link_up(self) -> bool:
        return self.up and not self.closed

    def close(self) -> None:
        self.closed = True
