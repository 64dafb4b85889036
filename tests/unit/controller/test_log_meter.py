"""The firewall's log meter is part of each chassis' desired state.

A logged deny's flow sends to the controller under `acl.LOG_METER`; a switch
refuses a flow naming a meter it does not have, so the controller installs
the meter with the flows that use it, and removes it with the last of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vnet.compiler.acl import LOG_METER
from vnet.controller.service import Controller, LocalSouthbound
from vnet.datapath.meters import OFPMF_PKTPS, Band, MeterConfig
from vnet.store import SqliteStore

from .test_controller import MODEL, over_openflow, switch_for

WANT = MeterConfig(LOG_METER.meter_id, OFPMF_PKTPS, (Band(LOG_METER.rate, LOG_METER.burst),))
LOGGED_DENY: dict[str, Any] = {
    "name": "audit-p2",
    "tenant": "t",
    "priority": 10,
    "applied_to": {},
    "rules": [{"action": "deny", "direction": "ingress", "protocol": "tcp", "ports": "23",
               "log": True}],
}  # fmt: skip


def _metered(sw: Any) -> list[Any]:
    return [r.flow for r in sw.pipeline.rules() if r.flow.instructions.meter is not None]


def test_a_logged_deny_brings_its_meter_and_takes_it_away() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply(MODEL)
        sw = switch_for(ctl)
        sess = await ctl.attach(LocalSouthbound(sw))
        assert sw.meters.meters == {} and ctl.desired(ctl.nb.state(), sess).meters == []  # type: ignore[union-attr]
        ctl.nb.apply({**MODEL, "policies": [LOGGED_DENY]})
        await ctl.sync(sess)
        assert [m.config for m in sw.meters.meters.values()] == [WANT]
        flows = _metered(sw)
        assert flows and {f.instructions.meter for f in flows} == {LOG_METER.meter_id}
        # every flow the chassis should hold is there: none refused for its meter
        want = ctl.desired(ctl.nb.state(), sess)
        assert want is not None and len(sw.pipeline.rules()) == len(want.flows)
        sess.full = True
        assert await ctl.sync(sess) == 0  # the meter reads back as it was sent
        ctl.nb.delete("policy", "audit-p2")
        await ctl.sync(sess)
        assert sw.meters.meters == {} and _metered(sw) == []

    asyncio.run(main())


def test_over_openflow_the_meter_is_installed_and_reads_back_equal() -> None:
    async def main() -> None:
        ctl = Controller(SqliteStore())
        ctl.nb.apply({**MODEL, "policies": [LOGGED_DENY]})
        sw = switch_for(ctl)
        async with over_openflow(ctl, sw):
            assert [m.config for m in sw.meters.meters.values()] == [WANT]
            assert _metered(sw)
            (sess,) = ctl.sessions.values()
            sess.full = True
            assert await ctl.sync(sess) == 0

    asyncio.run(main())
