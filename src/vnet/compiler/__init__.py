"""Model -> logical flows (stages as data, provenance) -> flows for one chassis."""

from . import acl as acl  # registers the firewall's builders
from . import dhcp as dhcp  # registers the DHCP punts' builders
from . import nat as nat  # registers the floating IPs' builders
from . import neighbour as neighbour  # registers the learned neighbours' builders
from . import router as router  # registers the logical router's builders
from . import switch as switch  # registers the logical switch's builders
from .localize import local_groups, local_ports, localize
from .logical import Compiler, LFlow, cookie_for
from .memo import Memo
from .stages import (
    NEXT,
    OUTPUT,
    PIPELINE,
    ROUTER,
    SWITCH,
    Datapath,
    Stage,
    StageError,
    check,
    table,
)

__all__ = [
    "NEXT",
    "OUTPUT",
    "PIPELINE",
    "ROUTER",
    "SWITCH",
    "Compiler",
    "Datapath",
    "LFlow",
    "Memo",
    "Stage",
    "StageError",
    "check",
    "cookie_for",
    "local_groups",
    "local_ports",
    "localize",
    "table",
]
