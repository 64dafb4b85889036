"""The declarative model: objects users declare (`objects`) and the rules between them (`rules`)."""

from .objects import (
    KINDS,
    ORDER,
    AddressPair,
    Chassis,
    FixedIP,
    Network,
    Pool,
    Port,
    Resource,
    Subnet,
    Tenant,
)
from .rules import Change, ModelError, State, admit, plan_delete, resolve

__all__ = [
    "KINDS",
    "ORDER",
    "AddressPair",
    "Change",
    "Chassis",
    "FixedIP",
    "ModelError",
    "Network",
    "Pool",
    "Port",
    "Resource",
    "State",
    "Subnet",
    "Tenant",
    "admit",
    "plan_delete",
    "resolve",
]
