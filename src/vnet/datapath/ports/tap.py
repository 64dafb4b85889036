"""TAP devices: the switch's internal port, and ports for virtual machines.

Two uses, one kernel object (`/dev/net/tun` with IFF_TAP | IFF_NO_PI |
IFF_VNET_HDR):

* Internal port (`TapDevice`): the switch holds the TAP file descriptor, so
  the host's own network stack is the other end -- frames the switch writes
  arrive on the host interface, frames the host sends are read here.  Open
  vSwitch's userspace datapath makes its internal ports the same way.
  TUNSETOFFLOAD tells the kernel the switch copes with partial checksums and
  GSO frames, which then pass through with their virtio-net header.
* VM port (`create_vm_tap`): the switch creates a persistent TAP with
  IFF_VNET_HDR and lets go of it, so qemu can attach (`-netdev
  tap,ifname=NAME,script=no,downscript=no,vnet_hdr=on`); the switch then
  drives it like any netdev, through AF_PACKET.  `remove_tap` deletes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from .. import offload
from ..port import Frame
from .af_packet import MAX_FRAME, DeviceGone, set_up, sysfs

__all__ = ["TapDevice", "create_vm_tap", "open_tap", "remove_tap"]

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04


def open_tap(name: str, vnet_hdr: bool = True, offloads: bool = True) -> int:
    """Create (or attach to) TAP `name`; returns a non-blocking fd."""
    if len(name.encode()) > 15:
        raise ValueError(f"interface name {name!r} is longer than 15 bytes")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
        if vnet_hdr:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", offload.HDR_LEN))
            if offloads:
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError:
        os.close(fd)
        raise
    return fd


def create_vm_tap(name: str, owner: int | None = None) -> None:
    """A persistent TAP with IFF_VNET_HDR for a VM to attach to; brought up."""
    fd = open_tap(name, offloads=False)
    try:
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)
    set_up(name)


def remove_tap(name: str) -> None:
    try:
        fd = open_tap(name, offloads=False)
    except OSError:
        return
    try:
        fcntl.ioctl(fd, TUNSETPERSIST, 0)
    finally:
        os.close(fd)


class TapDevice:
    """A TAP whose file descriptor the switch holds (the internal port)."""

    def __init__(self, name: str, up: bool = False) -> None:
        self.name = name
        self.fd = open_tap(name)
        self.vnet_hdr = True
        if up:  # like Open vSwitch's internal ports, down until the administrator says
            set_up(name)
        addr = sysfs(name, "address") or "0:0:0:0:0:0"
        self.hw_addr = int(addr.replace(":", ""), 16)
        self.mtu = int(sysfs(name, "mtu") or 1500)
        self.closed = False

    def fileno(self) -> int | None:
        return self.fd

    def recv_batch(self, limit: int) -> list[Frame]:
        out: list[Frame] = []
        h = offload.HDR_LEN
        for _ in range(limit):
            try:
                data = os.read(self.fd, MAX_FRAME)
            except BlockingIOError:
                break
            except OSError as e:
                raise DeviceGone(e.errno, f"{self.name}: {e.strerror}") from None
            out.append((data[:h], data[h:]))
        return out

    def send(self, hdr: bytes, frame: bytes) -> bool:
        try:
            os.writev(self.fd, (hdr or offload.NO_HDR, frame))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            if e.errno in (errno.EIO, errno.EINVAL, errno.ENOBUFS, errno.EBADF):
                return False
            raise
        return True

    def flush(self) -> None:
        pass  # every send is complete when it returns

    def link_up(self) -> bool:
        flags = sysfs(self.name, "flags")
        return flags is not None and bool(int(flags, 16) & 1)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
