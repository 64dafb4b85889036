"""Tunnel port device: the underlay sockets of one VTEP (VXLAN, Geneve or NVGRE).

Flow-based, as Open vSwitch's `remote_ip=flow,key=flow` ports: one port per
kind carries every VNI to every remote VTEP; the pipeline says where each
frame goes (`tun_dst`, `tun_id`) and the switch builds the outer headers
(`vnet.packet.encap`).  This device only moves bytes:

* receive: VXLAN and Geneve on a UDP socket bound to the local underlay
  address and the kind's port (the kernel checks the outer IP and UDP
  headers and their checksums); NVGRE on a raw IP-protocol-47 socket bound
  to the same address (the whole IPv4 packet arrives).  `recv_raw` returns
  (outer source, payload) pairs; decapsulation is the switch's, so a bad
  header is a drop counted by reason there.
* send: one raw IPPROTO_RAW socket (IP_HDRINCL): the outer IPv4 packet is
  written whole, so DF, the UDP source port and the checksums are what vnet
  chose; the kernel routes it by destination.
* `path_mtu(dst)`: the kernel's MTU towards a remote VTEP (IP_MTU on a
  connected UDP socket, so a learnt path MTU counts too), cached briefly.
"""

from __future__ import annotations

import contextlib
import socket
import time

from ...packet import encap
from ...packet.addr import ip4_str
from ..port import Frame

__all__ = ["TunnelDevice"]

IP_MTU = 14
SOCKBUF = 8 << 20
MTU_TTL = 5.0


class TunnelDevice:
    vnet_hdr = False
    hw_addr = 0

    def __init__(self, name: str, kind: str, local_ip: int) -> None:
        if kind not in encap.KINDS:
            raise ValueError(f"unknown tunnel kind {kind!r}")
        self.name = name
        self.kind = kind
        self.local_ip = local_ip
        self.mtu = 1500
        port = encap.udp_port(kind)
        if port is not None:
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.bind((ip4_str(local_ip), port))
        else:
            rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
            rx.bind((ip4_str(local_ip), 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for s in (rx, tx):
            s.setblocking(False)
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKBUF)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKBUF)
        self._rx, self._tx = rx, tx
        self._mtu: dict[int, tuple[float, int]] = {}
        self.closed = False

    def fileno(self) -> int | None:
        return None if self.closed else self._rx.fileno()

    def recv_raw(self, limit: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        rx = self._rx
        for _ in range(limit):
            try:
                data, addr = rx.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            out.append((int.from_bytes(socket.inet_aton(addr[0]), "big"), data))
        return out

    def recv_batch(self, limit: int) -> list[Frame]:
        return []  # frames need their tunnel metadata: the switch reads recv_raw

    def send(self, hdr: bytes, frame: bytes) -> bool:
        return False  # a frame without tunnel metadata has nowhere to go

    def send_ip(self, dst: int, packet: bytes) -> bool:
        try:
            self._tx.sendto(packet, (ip4_str(dst), 0))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return False
        return True

    def path_mtu(self, dst: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        hit = self._mtu.get(dst)
        if hit is not None and hit[0] > now:
            return hit[1]
        mtu = 1500
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((ip4_str(dst), encap.udp_port(self.kind) or 9))
            mtu = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
        self._mtu[dst] = (now + MTU_TTL, mtu)
        return mtu

    def flush(self) -> None:
        pass  # every send is complete when it returns

    def link_up(self) -> bool:
        return not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._rx.close()
            self._tx.close()
