"""The declarative model: objects users declare (`objects`, `secrules`), the rules between
them (`rules`), and what security groups and policies intend (`policy`)."""

from .objects import (
    KINDS,
    ORDER,
    AddressPair,
    Chassis,
    FixedIP,
    GroupRule,
    Network,
    Peer,
    Policy,
    PolicyRule,
    Pool,
    Port,
    Resource,
    SecurityGroup,
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
    "GroupRule",
    "ModelError",
    "Network",
    "Peer",
    "Policy",
    "PolicyRule",
    "Pool",
    "Port",
    "Resource",
    "SecurityGroup",
    "State",
    "Subnet",
    "Tenant",
    "admit",
    "plan_delete",
    "resolve",
]
