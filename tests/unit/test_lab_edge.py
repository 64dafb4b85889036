"""The lab's physical edge, as the file says it: chassis uplinks and the outside."""

from __future__ import annotations

from typing import Any

import pytest

from vnet.lab.topology import (
    DEFAULT_SERVER,
    TopologyError,
    with_outside,
    with_physnets,
)


def doc(**extra: Any) -> dict[str, Any]:
    return {
        "chassis": [{"name": "hv1"}, {"name": "hv2", "physnets": {"phys": "eth7"}}],
        "networks": [
            {"name": "ext", "tenant": "t", "external": True, "physnet": "phys"},
            {"name": "ext2", "tenant": "t", "external": True, "physnet": "dc", "vlan": 100},
            {"name": "inner", "tenant": "t"},
        ],
        **extra,
    }


def test_chassis_without_physnets_get_an_uplink_per_physnet() -> None:
    given = doc()
    out = with_physnets(given)
    assert out["chassis"][0]["physnets"] == {"dc": "up-dc", "phys": "up-phys"}
    assert out["chassis"][1]["physnets"] == {"phys": "eth7"}  # the file's own, kept
    assert "physnets" not in given["chassis"][0]  # the document given is not changed


def test_a_chassis_with_empty_physnets_gets_no_uplink() -> None:
    d = doc()
    d["chassis"].append({"name": "hv3", "physnets": {}})
    assert with_physnets(d)["chassis"][2]["physnets"] == {}


def test_a_file_without_external_networks_is_left_alone() -> None:
    d = {"chassis": [{"name": "hv1"}], "networks": [{"name": "n", "tenant": "t"}]}
    assert with_physnets(d) == d


@pytest.mark.parametrize(
    ("net", "field"),
    [
        ({"name": "x", "external": True}, "networks[0].physnet"),
        ({"name": "x", "external": True, "physnet": "a-very-long-physnet"}, "physnet"),
    ],
)
def test_what_the_lab_cannot_build_is_refused_naming_the_field(
    net: dict[str, Any], field: str
) -> None:
    with pytest.raises(TopologyError) as e:
        with_physnets({"chassis": [{"name": "hv1"}], "networks": [net]})
    assert str(e.value).startswith(f"{field}:")


def test_the_outside_defaults_and_overrides() -> None:
    rest, out = with_outside(doc())
    assert out.server == DEFAULT_SERVER and "outside" not in rest
    rest, out = with_outside(doc(outside={"server": ["198.18.0.5/16"]}))
    assert out.server == ("198.18.0.5/16",) and "outside" not in rest


@pytest.mark.parametrize(
    ("outside", "field"),
    [
        ({"server": ["nonsense"]}, "outside.server[0]"),
        ({"server": ["198.18.0.5/16", "198.18.0.6/16"]}, "outside.server[1]"),
        ({"server": []}, "outside.server"),
        ({"router": "x"}, "outside"),
    ],
)
def test_a_bad_outside_is_refused_naming_the_field(outside: dict[str, Any], field: str) -> None:
    with pytest.raises(TopologyError) as e:
        with_outside(doc(outside=outside))
    assert str(e.value).startswith(f"{field}:")
