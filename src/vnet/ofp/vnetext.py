"""vnet's own OpenFlow experimenter messages: BFD between the controller and a vnet switch.

An OpenFlow 1.3 EXPERIMENTER message (type 4) carries vnet's experimenter id
(`VNET_EXPERIMENTER`, apart from Nicira's 0x2320 and ONF's) and an
experimenter type:

- `BFD_CONFIG` (controller -> switch): every BFD session the controller wants
  the switch to run, as the whole set -- a record per peer: its underlay IPv4
  address, the encapsulation of the tunnel port it runs over, the detect
  multiplier, and desired min TX / required min RX in ms (Open vSwitch's
  bfd:min_tx, min_rx).  The switch adds what is new, sets the timers of
  what it has, removes the sessions an earlier BFD_CONFIG asked for and this
  one does not (sessions added by hand, `vnet bfd add`, are left alone), and
  answers with a full BFD_STATUS.
- `BFD_STATUS` (switch -> controller): sessions' states, a record per peer
  (underlay IPv4 address and RFC 5880 state: 0 admin_down, 1 down, 2 init,
  3 up); `full` set when the records are every session the switch runs (the
  answer to a BFD_CONFIG), clear for the changes `Monitor.on_change` saw.
- `STAND_DOWN` (controller -> switch): the cookies (8 bytes each) of the
  flows that stand down -- match nothing while installed -- when the switch's
  BFD says it is isolated (`datapath.bfd`): the flows that make its chassis a
  router's active gateway.  The whole set each time, flows installed later
  with one of those cookies included; the flows keep their provenance
  cookies, and the switch keeps the set across controller connections (it
  is needed most when none is up); the controller sends it on each
  connection and whenever it changes.  Cookie 0 (every flow without one) and
  0xffffffffffffffff are refused.  No answer but an error.

Records are fixed-size, big-endian, so a message is its header and a count
of records; anything shorter, longer, or with an unknown encapsulation or
state, or a refused cookie is refused (`DecodeError`, an OpenFlow error to
the sender) rather than half read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BFD_CONFIG",
    "BFD_STATUS",
    "STAND_DOWN",
    "STATES",
    "VNET_EXPERIMENTER",
    "BfdWant",
    "DecodeError",
    "decode_config",
    "decode_stand_down",
    "decode_status",
    "encode_config",
    "encode_stand_down",
    "encode_status",
]

VNET_EXPERIMENTER = 0x00766E74  # "\0vnt"
BFD_CONFIG = 1
BFD_STATUS = 2
STAND_DOWN = 3
OFPT_EXPERIMENTER = 4
STATES = ("admin_down", "down", "init", "up")  # RFC 5880's numbering
ENCAPS = ("vxlan", "geneve", "nvgre")

_HDR = struct.Struct("!BBHIII")  # version, type, length, xid, experimenter, exp_type
_CONFIG = struct.Struct("!IBB2xII")  # peer, encap, mult, min_tx ms, min_rx ms
_STATUS_HEAD = struct.Struct("!B3x")  # full
_STATUS = struct.Struct("!IB3x")  # peer, state
_COOKIE = struct.Struct("!Q")
_NO_COOKIES = (0, (1 << 64) - 1)  # every flow without a cookie; OpenFlow's "any"


class DecodeError(ValueError):
    pass


@dataclass(frozen=True)
class BfdWant:
    """One session the controller wants a switch to run."""

    peer: int  # the peer's underlay IPv4 address
    encap: str  # the tunnel port's encapsulation (`tunnel_iface(encap)`)
    mult: int = 3
    min_tx: int = 100  # ms
    min_rx: int = 100  # ms


def _message(exp_type: int, body: bytes, xid: int) -> bytes:
    return _HDR.pack(4, OFPT_EXPERIMENTER, _HDR.size + len(body), xid, VNET_EXPERIMENTER,
                     exp_type) + body  # fmt: skip


def split(raw: bytes) -> tuple[int, int, bytes] | None:
    """(experimenter, exp_type, body) of an EXPERIMENTER message; None if it is none."""
    if len(raw) < _HDR.size or raw[1] != OFPT_EXPERIMENTER:
        return None
    _, _, length, _, exp, exp_type = _HDR.unpack_from(raw)
    return exp, exp_type, raw[_HDR.size : length]


def encode_config(wants: list[BfdWant], xid: int = 0) -> bytes:
    body = b"".join(
        _CONFIG.pack(w.peer, ENCAPS.index(w.encap), w.mult, w.min_tx, w.min_rx) for w in wants
    )
    return _message(BFD_CONFIG, body, xid)


def decode_config(body: bytes) -> list[BfdWant]:
    if len(body) % _CONFIG.size:
        raise DecodeError(f"bfd config: {len(body)} bytes is not a whole number of records")
    out = []
    for peer, encap, mult, tx, rx in _CONFIG.iter_unpack(body):
        if encap >= len(ENCAPS):
            raise DecodeError(f"bfd config: unknown encapsulation {encap}")
        out.append(BfdWant(peer, ENCAPS[encap], mult, tx, rx))
    return out


def encode_status(states: dict[int, str], full: bool, xid: int = 0) -> bytes:
    body = _STATUS_HEAD.pack(int(full)) + b"".join(
        _STATUS.pack(peer, STATES.index(s)) for peer, s in sorted(states.items())
    )
    return _message(BFD_STATUS, body, xid)


def decode_status(body: bytes) -> tuple[dict[int, str], bool]:
    """(peer -> state, full) of a BFD_STATUS body."""
    if len(body) < _STATUS_HEAD.size or (len(body) - _STATUS_HEAD.size) % _STATUS.size:
        raise DecodeError(f"bfd status: {len(body)} bytes is not a header and whole records")
    (full,) = _STATUS_HEAD.unpack_from(body)
    out = {}
    for peer, state in _STATUS.iter_unpack(body[_STATUS_HEAD.size :]):
        if state >= len(STATES):
            raise DecodeError(f"bfd status: unknown state {state}")
        out[peer] = STATES[state]
    return out, bool(full)


def encode_stand_down(cookies: Iterable[int], xid: int = 0) -> bytes:
    body = b"".join(_COOKIE.pack(c) for c in sorted(set(cookies)))
    return _message(STAND_DOWN, body, xid)


def decode_stand_down(body: bytes) -> frozenset[int]:
    """The cookies of a STAND_DOWN body."""
    if len(body) % _COOKIE.size:
        raise DecodeError(f"stand down: {len(body)} bytes is not a whole number of cookies")
    out = frozenset(c for (c,) in _COOKIE.iter_unpack(body))
    for c in _NO_COOKIES:
        if c in out:
            raise DecodeError(f"stand down: cookie {c:#x} names no flow of its own")
    return out
