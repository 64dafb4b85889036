"""The connection log: what the firewall's logged rules decided, from every chassis.

Each packet a logged rule sends to the controller becomes one `Record`: when,
on which chassis, the tuple (protocol, source address and port, destination
address and port), the logical ports at both ends by name (when the model
knows the addresses), the verdict (allow, deny, reject) and the rule that
gave it.  Records carry a sequence number, so a reader that follows the log
asks for what came after the last one it saw.

Memory is bounded twice: the log keeps the last `size` records (older ones
fall off the end), and it takes at most `rate` records a second (a token
bucket with `burst` tokens) -- the meter in the compiled flows already limits
what a switch punts, this caps the controller's own work when many switches
punt at once.  What the bucket refuses is counted (`dropped`), never silently
lost.  Readers may wait for the next record (`wait`) from any event loop or
thread; the log wakes them when a record arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["VERDICTS", "FlowLog", "Record"]

VERDICTS = ("allow", "deny", "reject")


@dataclass(frozen=True)
class Record:
    seq: int
    time: float  # seconds since the epoch
    chassis: str
    proto: str  # tcp, udp, icmp, icmpv6, sctp or the protocol number
    src: str
    dst: str
    sport: int | None  # transport ports; for ICMP the type and code
    dport: int | None
    src_port: str | None  # logical port names, None when the model has no such address
    dst_port: str | None
    verdict: str
    rule: str
    direction: str  # ingress or egress: which side's rule
    port: str  # the logical port whose rule it is

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def endpoints(self) -> str:
        """`tcp 10.0.0.1:40000 -> 10.0.0.2:5432` (IPv6 addresses in brackets), or
        `icmp 10.0.0.1 -> 10.0.0.2 type 8 code 0`."""
        if self.proto in ("icmp", "icmpv6"):
            kind = f" type {self.sport} code {self.dport}" if self.sport is not None else ""
            return f"{self.proto} {self.src} -> {self.dst}{kind}"

        def end(addr: str, port: int | None) -> str:
            a = f"[{addr}]" if ":" in addr and port is not None else addr
            return a if port is None else f"{a}:{port}"

        return f"{self.proto} {end(self.src, self.sport)} -> {end(self.dst, self.dport)}"


class FlowLog:
    def __init__(
        self,
        size: int = 10_000,
        rate: float = 1000.0,
        burst: int = 1000,
        now: Callable[[], float] = time.time,
    ) -> None:
        if size < 1 or rate <= 0 or burst < 1:
            raise ValueError("a flow log needs size >= 1, rate > 0 and burst >= 1")
        self.size, self.rate, self.burst = size, rate, burst
        self.now = now
        self.seq = 0  # the last record's number
        self.dropped = 0  # records refused by the rate cap
        self._records: deque[Record] = deque(maxlen=size)
        self._tokens = float(burst)
        self._filled = now()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return len(self._records)

    def _take(self, t: float) -> bool:
        self._tokens = min(float(self.burst), self._tokens + (t - self._filled) * self.rate)
        self._filled = t
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def add(self, **fields: Any) -> Record | None:
        """Log one record (fields as `Record`'s but `seq` and `time`); None when the
        rate cap refused it (counted in `dropped`)."""
        t = self.now()
        with self._lock:
            if not self._take(t):
                self.dropped += 1
                return None
            self.seq += 1
            rec = Record(seq=self.seq, time=t, **fields)
            self._records.append(rec)
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
                loop.call_soon_threadsafe(_wake, fut)
        return rec

    def query(
        self,
        port: str | None = None,
        verdict: str | None = None,
        since: float | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> tuple[list[Record], int]:
        """The records that match, oldest first (the newest `limit` of them), and the
        sequence number to follow from (the last one logged when this was asked)."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: expected one of {', '.join(VERDICTS)}")
        with self._lock:
            records, last = list(self._records), self.seq
        out = [
            r
            for r in records
            if r.seq > after
            and (verdict is None or r.verdict == verdict)
            and (since is None or r.time >= since)
            and (port is None or port in (r.src_port, r.dst_port))
        ]
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out, last

    async def wait(self, after: int, timeout: float) -> bool:
        """Until a record after `after` is logged (True) or `timeout` passes (False)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.seq > after:
                return True
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if (loop, fut) in self._waiters:
                    self._waiters.remove((loop, fut))

    def stats(self) -> dict[str, Any]:
        return {"records": len(self._records), "last": self.seq, "size": self.size,
                "rate": self.rate, "dropped": self.dropped}  # fmt: skip


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
