"""The connection log: filters, the bound on size and rate, and waiting for the next record."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from vnet.controller.flowlog import FlowLog


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def rec(verdict: str = "deny", src_port: str | None = "a", dst_port: str | None = "b") -> Any:
    return {
        "chassis": "hv1", "proto": "tcp", "src": "10.0.0.1", "dst": "10.0.0.2",
        "sport": 40000, "dport": 5432, "src_port": src_port, "dst_port": dst_port,
        "verdict": verdict, "rule": "policy p rule 1", "direction": "ingress", "port": "b",
    }  # fmt: skip


def test_filters_by_port_verdict_time_and_sequence() -> None:
    clock = Clock()
    log = FlowLog(now=clock)
    log.add(**rec("deny", "a", "b"))
    clock.t += 10
    log.add(**rec("allow", "c", "b"))
    log.add(**rec("reject", "a", None))
    seqs = lambda recs: [r.seq for r in recs[0]]  # noqa: E731
    assert seqs(log.query()) == [1, 2, 3]
    assert seqs(log.query(port="a")) == [1, 3]
    assert seqs(log.query(port="b", verdict="allow")) == [2]
    assert seqs(log.query(since=1005)) == [2, 3]
    assert seqs(log.query(after=2)) == [3]
    assert seqs(log.query(limit=2)) == [2, 3]
    assert log.query(port="nobody") == ([], 3)
    with pytest.raises(ValueError, match="verdict 'drop'"):
        log.query(verdict="drop")


def test_keeps_the_last_records_and_caps_the_rate() -> None:
    clock = Clock()
    log = FlowLog(size=3, rate=2, burst=4, now=clock)
    added = [log.add(**rec()) for _ in range(6)]
    assert [r.seq if r else None for r in added] == [1, 2, 3, 4, None, None]
    assert log.dropped == 2 and len(log) == 3
    assert [r.seq for r in log.query()[0]] == [2, 3, 4]
    clock.t += 1.0  # two more tokens
    assert log.add(**rec()) is not None and log.add(**rec()) is not None
    assert log.add(**rec()) is None
    assert log.stats() == {"records": 3, "last": 6, "size": 3, "rate": 2, "dropped": 3}
    with pytest.raises(ValueError):
        FlowLog(size=0)


def test_wait_wakes_on_a_record_from_another_thread_or_times_out() -> None:
    async def main() -> None:
        log = FlowLog()
        assert await log.wait(0, 0.05) is False
        threading.Timer(0.05, lambda: log.add(**rec())).start()
        assert await asyncio.wait_for(log.wait(0, 5), 2) is True
        assert await log.wait(0, 0) is True  # already there: no waiting at all

    asyncio.run(main())


def test_endpoints_text() -> None:
    log = FlowLog()
    r = log.add(**rec())
    assert r is not None and r.endpoints() == "tcp 10.0.0.1:40000 -> 10.0.0.2:5432"
    r6 = log.add(**{**rec(), "src": "fd00::1", "dst": "fd00::2"})
    assert r6 is not None and r6.endpoints() == "tcp [fd00::1]:40000 -> [fd00::2]:5432"
    assert r6.as_dict()["seq"] == 2
    icmp = log.add(**{**rec(), "proto": "icmpv6", "src": "fd00::1", "sport": 128, "dport": 0})
    assert icmp is not None and icmp.endpoints() == "icmpv6 fd00::1 -> 10.0.0.2 type 128 code 0"
