"""vnet's STAND_DOWN experimenter message: the codec, and a vnet switch's agent taking
it (the set replaced whole) or refusing a malformed one with an OpenFlow error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from vnet.datapath import Switch
from vnet.ofp.agent import Agent
from vnet.ofp.client import OFClient, OFClientError
from vnet.ofp.vnetext import (
    STAND_DOWN,
    VNET_EXPERIMENTER,
    DecodeError,
    decode_stand_down,
    encode_stand_down,
    split,
)

from .agent_thread import agent_thread, memory_switch

COOKIES = {0x1234_5678_0000_0051, 7, (1 << 64) - 2}


def test_the_codec_round_trips_and_refuses_what_names_no_flow() -> None:
    exp, kind, body = split(encode_stand_down(COOKIES, 5)) or (0, 0, b"")
    assert (exp, kind) == (VNET_EXPERIMENTER, STAND_DOWN)
    assert len(body) == 8 * len(COOKIES) and decode_stand_down(body) == COOKIES
    assert decode_stand_down(b"") == frozenset()
    for bad, why in (
        (body[:-1], "whole number"),
        (body + bytes(8), "cookie 0x0"),
        (body + b"\xff" * 8, "0xffffffffffffffff"),
    ):
        with pytest.raises(DecodeError, match=why):
            decode_stand_down(bad)


@pytest.fixture
def switch() -> Iterator[tuple[Switch, str]]:
    sw = memory_switch("t", 2)
    agent = Agent(sw, listeners=["ptcp:0:127.0.0.1"])
    with agent_thread(agent):
        yield sw, f"tcp:127.0.0.1:{agent.bound_ports()[0]}"


def test_the_agent_takes_the_set_and_refuses_a_malformed_one(
    switch: tuple[Switch, str],
) -> None:
    sw, target = switch
    with OFClient(target) as c:
        c.send_raw(encode_stand_down(COOKIES, 11))
        c.transact()  # a barrier: no error came back
        assert sw.pipeline.stand_down == COOKIES
        c.send_raw(encode_stand_down({9}, 12))
        c.transact()
        assert sw.pipeline.stand_down == {9}  # the whole set, replaced
        for raw in (encode_stand_down({9, 10}, 13)[:-3], encode_stand_down({0, 10}, 14)):
            fixed = raw[:2] + len(raw).to_bytes(2, "big") + raw[4:]
            c.send_raw(fixed)
            with pytest.raises(OFClientError) as e:
                c.transact()
            assert (e.value.type, e.value.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN)
        assert sw.pipeline.stand_down == {9}  # nothing changed
        c.send_raw(encode_stand_down((), 15))
        c.transact()
        assert sw.pipeline.stand_down == frozenset()
