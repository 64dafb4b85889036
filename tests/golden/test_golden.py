"""Table-driven cases: flows, groups, packets and the datapath actions they must produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnet.pipeline import GroupMod, GroupModCommand, NullHooks, Pipeline, format_odp
from vnet.pipeline.ofctl import parse_flows, parse_group, parse_packet

CASES = Path(__file__).parent / "cases"


class LiveExcept6(NullHooks):
    def port_live(self, port: int) -> bool:
        return port != 6


def load_cases() -> list[tuple[str, str, list[str], list[str], list[tuple[str, str]]]]:
    out = []
    for path in sorted(CASES.glob("*.txt")):
        for chunk in path.read_text().split("\n## ")[1:]:
            name, *lines = chunk.splitlines()
            section = ""
            flows: list[str] = []
            groups: list[str] = []
            packets: list[tuple[str, str]] = []
            for raw in lines:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if line.endswith(":") and " " not in line:
                    section = line[:-1]
                    continue
                if section == "flows":
                    flows.append(line)
                elif section == "groups":
                    groups.append(line)
                elif section == "packets":
                    pkt, _, want = line.partition("->")
                    packets.append((pkt.strip(), want.strip()))
            out.append((f"{path.stem}: {name.strip()}", path.name, flows, groups, packets))
    return out


@pytest.mark.parametrize(
    ("name", "source", "flows", "groups", "packets"),
    load_cases(),
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_golden(
    name: str, source: str, flows: list[str], groups: list[str], packets: list[tuple[str, str]]
) -> None:
    p = Pipeline()
    p.commit([GroupMod(GroupModCommand.ADD, parse_group(g)) for g in groups])
    p.add_flows(parse_flows("\n".join(flows), source))
    assert packets, name
    for pkt, want in packets:
        d = p.translate(parse_packet(pkt), LiveExcept6())
        got = format_odp(d.odp)
        if not d.odp and d.drop_reason:
            got += f" ({d.drop_reason})"
        assert got == want, f"{name}: {pkt}"
