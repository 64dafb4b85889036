"""A small OpenFlow 1.3 client: what `vnet ofctl` uses to talk to a switch.

Blocking, one request at a time, over TCP or a Unix socket: HELLO, then the
request and a BARRIER, collecting every reply (multipart replies until the
last part) and raising `OFClientError` for an ERROR the switch sends back.
Controller-side messages are encoded and replies decoded with os-ken, so it
speaks to any OpenFlow 1.3 switch, not only vnet's.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from .convert import DP
from .target import parse_target

__all__ = ["OFClient", "OFClientError", "error_name"]

_HDR = struct.Struct("!BBHI")


def error_name(type_: int, code: int) -> str:
    tnames = {v: k for k, v in vars(ofp).items() if k.startswith("OFPET_") and isinstance(v, int)}
    tname = tnames.get(type_, str(type_))
    prefix = {
        "OFPET_HELLO_FAILED": "OFPHFC_",
        "OFPET_BAD_REQUEST": "OFPBRC_",
        "OFPET_BAD_ACTION": "OFPBAC_",
        "OFPET_BAD_INSTRUCTION": "OFPBIC_",
        "OFPET_BAD_MATCH": "OFPBMC_",
        "OFPET_FLOW_MOD_FAILED": "OFPFMFC_",
        "OFPET_GROUP_MOD_FAILED": "OFPGMFC_",
        "OFPET_METER_MOD_FAILED": "OFPMMFC_",
        "OFPET_PORT_MOD_FAILED": "OFPPMFC_",
        "OFPET_ROLE_REQUEST_FAILED": "OFPRRFC_",
    }.get(tname, "")
    cname = next(
        (k for k, v in vars(ofp).items() if prefix and k.startswith(prefix) and v == code),
        str(code),
    )
    return f"{tname.removeprefix('OFPET_')}/{cname.removeprefix(prefix) if prefix else cname}"


class OFClientError(Exception):
    def __init__(self, type_: int, code: int, data: bytes) -> None:
        self.type = type_
        self.code = code
        self.data = data
        super().__init__(f"switch refused the request: {error_name(type_, code)}")


class OFClient:
    def __init__(self, target: str, timeout: float = 10.0) -> None:
        kind, host, port = parse_target(target if ":" in target else f"unix:{target}")
        if kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(host)
        elif kind == "tcp":
            self.sock = socket.create_connection((host, port), timeout=timeout)
        else:
            raise ValueError(f"{target!r}: connect with tcp:HOST:PORT or unix:PATH")
        self.xid = 0x1000
        self._buf = b""
        self._send(parser.OFPHello(DP))
        _, mtype, _, _, _ = self._read()
        if mtype != ofp.OFPT_HELLO:
            raise OFClientError(ofp.OFPET_HELLO_FAILED, 0, b"")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> OFClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg: Any) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        msg.serialize()
        self.sock.sendall(bytes(msg.buf))
        return self.xid

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self) -> tuple[int, int, int, int, bytes]:
        while len(self._buf) < 8:
            self._fill()
        version, mtype, length, xid = _HDR.unpack_from(self._buf)
        while len(self._buf) < length:
            self._fill()
        raw, self._buf = self._buf[:length], self._buf[length:]
        return version, mtype, length, xid, raw

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the switch closed the connection")
        self._buf += chunk

    def read_message(self) -> tuple[int, Any, bytes]:
        """The next message: (type, os-ken object or None, raw bytes)."""
        while True:
            version, mtype, length, xid, raw = self._read()
            if mtype == ofp.OFPT_ECHO_REQUEST:
                self.sock.sendall(
                    _HDR.pack(ofp.OFP_VERSION, ofp.OFPT_ECHO_REPLY, length, xid) + raw[8:]
                )
                continue
            try:
                msg = parser.msg_parser(DP, version, mtype, length, xid, raw)
            except Exception:
                msg = None
            return mtype, msg, raw

    def transact(self, *msgs: Any) -> list[Any]:
        """Send requests then a barrier; return the replies (errors raise)."""
        for m in msgs:
            self._send(m)
        barrier = self._send(parser.OFPBarrierRequest(DP))
        replies: list[Any] = []
        error: OFClientError | None = None
        while True:
            mtype, msg, raw = self.read_message()
            if mtype == ofp.OFPT_BARRIER_REPLY and _HDR.unpack_from(raw)[3] == barrier:
                break
            if mtype == ofp.OFPT_ERROR:
                t, c = struct.unpack_from("!HH", raw, 8)
                error = error or OFClientError(t, c, raw[12:])
            elif mtype in (ofp.OFPT_PACKET_IN, ofp.OFPT_PORT_STATUS, ofp.OFPT_FLOW_REMOVED):
                continue
            elif msg is not None:
                replies.append(msg)
        if error is not None:
            raise error
        return replies

    def multipart(self, req: Any) -> list[Any]:
        """A multipart request; the bodies of all its replies, in order."""
        body: list[Any] = []
        for r in self.transact(req):
            b = r.body
            if isinstance(b, list):
                body.extend(b)
            else:
                body.append(b)
        return body
