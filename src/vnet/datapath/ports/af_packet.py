"""AF_PACKET port device: any existing netdev (a veth end, a NIC, a TAP).

The socket is opened with PACKET_VNET_HDR, so every frame comes with its
virtio-net header: a TCP segment whose checksum the sender left to "hardware"
or a 64 KB GSO super-frame arrives as one frame plus the header that says how
to finish it, and leaves the same way on another offload-capable port.
Workloads keep their default offloads; without the header the kernel would
have to hand over finished, MTU-sized frames and TCP would crawl.

Receive drains the socket in a loop (up to `limit` frames per readiness
event) with `recvmsg_into` into one preallocated buffer.  VLAN tags that the
kernel stripped into metadata (VLAN offload on the receiving device) come
back in PACKET_AUXDATA and are put back into the frame, so the switch sees
the frame as it was on the wire.  Our own transmissions are not looped back
(PACKET_IGNORE_OUTGOING).  Kernel-side drops (a full socket buffer) are read
from PACKET_STATISTICS and counted by the switch.  Transmit bypasses the
device's qdisc (PACKET_QDISC_BYPASS): the switch does its own metering, and
the qdisc layer costs a sixth of the small-packet rate.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import socket
import struct

from .. import offload
from ..port import Frame

__all__ = ["AfPacketDevice", "DeviceGone", "set_up", "sysfs"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_QDISC_BYPASS = 20
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
_AUX = struct.Struct("=IIIHHHH")
MAX_FRAME = 65536 + 4 + offload.HDR_LEN
SOCKBUF = 8 << 20
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_GONE = (errno.ENETDOWN, errno.ENODEV, errno.ENXIO, errno.EBADF)


class DeviceGone(OSError):
    """The netdev behind a port disappeared."""


def sysfs(name: str, attr: str) -> str | None:
    try:
        with open(f"/sys/class/net/{name}/{attr}") as f:
            return f.read().strip()
    except OSError:
        return None


class AfPacketDevice:
    def __init__(self, name: str, vnet_hdr: bool = True) -> None:
        self.name = name
        try:
            self.ifindex = socket.if_nametoindex(name)
        except OSError:
            raise DeviceGone(errno.ENODEV, f"no network device {name!r}") from None
        addr = sysfs(name, "address") or "0:0:0:0:0:0"
        self.hw_addr = int(addr.replace(":", ""), 16)
        self.mtu = int(sysfs(name, "mtu") or 1500)
        # protocol 0: the socket hears nothing until bind() names the device;
        # opened with ETH_P_ALL it would queue every interface's frames meanwhile
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.vnet_hdr = False
            if vnet_hdr:
                s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                self.vnet_hdr = True
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            with contextlib.suppress(OSError):  # older kernels: skipped by type below
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            with contextlib.suppress(OSError):
                s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
                try:
                    s.setsockopt(socket.SOL_SOCKET, force, SOCKBUF)  # *BUFFORCE as root
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, opt, SOCKBUF)
            s.bind((name, ETH_P_ALL))
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.sock = s
        self._buf = bytearray(MAX_FRAME)
        self._mv = memoryview(self._buf)
        self.kernel_drops = 0

    def fileno(self) -> int | None:
        return self.sock.fileno()

    def recv_batch(self, limit: int) -> list[Frame]:
        out: list[Frame] = []
        mv = self._mv
        recv = self.sock.recvmsg_into
        h = offload.HDR_LEN if self.vnet_hdr else 0
        aux_size = socket.CMSG_SPACE(_AUX.size)
        for _ in range(limit):
            try:
                n, anc, _flags, addr = recv([mv], aux_size)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENETDOWN:
                    break  # the link went down; link state comes from rtnetlink
                if e.errno in _GONE:
                    raise DeviceGone(e.errno, f"{self.name}: {e.strerror}") from None
                raise
            if addr[2] == PACKET_OUTGOING:
                continue
            hdr = bytes(mv[:h])
            frame = bytes(mv[h:n])
            for level, kind, data in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUX.size:
                    status, _, _, _, _, tci, tpid = _AUX.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
                            tpid = 0x8100
                        frame = frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:]
                        hdr = offload.shift(hdr, 4)
            out.append((hdr, frame))
        return out

    def send(self, hdr: bytes, frame: bytes) -> bool:
        try:
            if len(frame) > 4096:
                self.sock.sendmsg((hdr, frame) if self.vnet_hdr else (frame,))
            else:
                self.sock.send(hdr + frame if self.vnet_hdr else frame)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            if e.errno in (errno.ENOBUFS, errno.EMSGSIZE, errno.EINVAL) or e.errno in _GONE:
                return False
            raise
        return True

    def stats(self) -> tuple[int, int]:
        """(packets, drops) the kernel counted since the last call."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("II", raw)
        self.kernel_drops += drops
        return packets, drops

    def link_up(self) -> bool:
        flags = sysfs(self.name, "flags")
        carrier = sysfs(self.name, "carrier")
        return flags is not None and bool(int(flags, 16) & 1) and carrier == "1"

    def close(self) -> None:
        self.sock.close()


def set_up(name: str) -> None:
    """Bring a netdev administratively up (SIOCSIFFLAGS), as a switch does with its ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr))[1]
        if not flags & IFF_UP:
            ifr = struct.pack("16sH14x", name.encode(), flags | IFF_UP)
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifr)
