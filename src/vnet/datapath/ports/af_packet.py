"""AF_PACKET port device: any existing netdev (a veth end, a NIC, a TAP).

The socket is opened with PACKET_VNET_HDR, so every frame comes with its
virtio-net header: a TCP segment whose checksum the sender left to "hardware"
or a 64 KB GSO super-frame arrives as one frame plus the header that says how
to finish it, and leaves the same way on another offload-capable port.
Workloads keep their default offloads; without the header the kernel would
have to hand over finished, MTU-sized frames and TCP would crawl.

Receive takes up to `limit` frames per readiness event.  VLAN tags that the
kernel stripped into metadata (VLAN offload on the receiving device) come
back in the ring slot's header (or PACKET_AUXDATA) and are put back into the
frame, so the switch sees the frame as it was on the wire.  Our own transmissions are not looped back
(PACKET_IGNORE_OUTGOING).  Kernel-side drops (a full socket buffer) are read
from PACKET_STATISTICS and counted by the switch.  Transmit bypasses the
device's qdisc (PACKET_QDISC_BYPASS): the switch does its own metering, and
the qdisc layer costs a sixth of the small-packet rate.

Rings (`rings=True`, the default): a system call per frame is what a Python
switch cannot afford on small packets, so the socket gets a TPACKET_V2
receive ring shared with the kernel (mmap), and a receive-less twin socket a
transmit ring.  The twin is watched by no event loop: the kernel's wake-up
after each sent frame then finds nobody to wake.  Receive reads every frame
the kernel has filled in without a system call; transmit writes frames into
free slots and `flush` hands them all to the kernel with one `send`.  A frame
written to a slot says, in its virtio-net header, that all of it is header
(hdr_len = its length, unless it is a GSO frame): the kernel then copies it
whole into the new packet instead of pointing into the ring page, which a
veth peer would otherwise copy again into a freshly allocated page.  Slots
are 2 KB: a frame larger than that (a 64 KB GSO segment, a jumbo frame) is
not cut -- the kernel queues a whole copy to the socket
(PACKET_COPY_THRESH), which receive reads with `recvmsg_into` in its ring
order, and transmit sends it on a third socket, without a ring, after
flushing the ring, so frames leave in the order the switch sent them.  Under
overload the kernel now and then leaves a receive slot empty while filling
the next ones; a slot still empty a millisecond after its successor filled
is given up and counted as a kernel drop, so the reader never waits on it
forever.  A socket that refuses rings (an old kernel) falls back to
`recvmsg_into` and `send`, a system call per frame.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import socket
import struct
import time
from collections.abc import Sequence

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
PACKET_RX_RING, PACKET_COPY_THRESH, PACKET_VERSION, PACKET_TX_RING, PACKET_LOSS = 5, 7, 10, 13, 14
TPACKET_V2 = 1
PACKET_OUTGOING = 4
TP_STATUS_USER, TP_STATUS_COPY = 1, 2
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
TP_STATUS_SEND_REQUEST = 1
# ring geometry: 2 KB slots (an MTU-sized frame and its headers), 1,024 to receive
# (2 MB, a burst of 64-byte frames), 256 to send; bigger frames go around the ring
SLOT = 2048
RX_SLOTS, TX_SLOTS = 1024, 256
SLOTS_PER_BLOCK = 8
TX_DATA = 32  # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): where a frame to send starts
TX_MAX = SLOT - TX_DATA
LOST_AFTER = 0.001  # an empty slot before a filled one for this long was skipped
_RXHDR = struct.Struct("=IIIH").unpack_from  # tp_status, tp_len, tp_snaplen, tp_mac
_VLAN = struct.Struct("=HH").unpack_from  # tp_vlan_tci, tp_vlan_tpid (offset 24)
_U32 = struct.Struct("=I")
_TXSLOT = struct.Struct("=III").pack_into  # tp_status, tp_len, tp_snaplen
# the same, and the virtio-net header's flags, gso_type and hdr_len (the slot's
# bytes between are zero on transmit: tp_mac, tp_net, time, VLAN, padding)
_TXLINEAR = struct.Struct("=III20xBBH").pack_into
HDR = offload.HDR_LEN
_PLAIN = TP_STATUS_USER | TP_STATUS_COPY | TP_STATUS_VLAN_VALID  # USER alone: a whole frame
_RX_OFFSETS = [i * SLOT for i in range(RX_SLOTS)]
_TX_OFFSETS = [i * SLOT for i in range(TX_SLOTS)]
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
    def __init__(self, name: str, vnet_hdr: bool = True, rings: bool = True) -> None:
        self.name = name
        try:
            self.ifindex = socket.if_nametoindex(name)
        except OSError:
            raise DeviceGone(errno.ENODEV, f"no network device {name!r}") from None
        addr = sysfs(name, "address") or "0:0:0:0:0:0"
        self.hw_addr = int(addr.replace(":", ""), 16)
        self.mtu = int(sysfs(name, "mtu") or 1500)
        self.vnet_hdr = False
        self.kernel_drops = 0
        # frames the ring lost: cut with no whole copy (socket buffer full), or a slot skipped
        self.truncated = 0
        self.sock = self._open(name, vnet_hdr, ETH_P_ALL)
        self._h = offload.HDR_LEN if self.vnet_hdr else 0  # the header before each frame
        self._buf = bytearray(MAX_FRAME)
        self._mv = memoryview(self._buf)
        self._ring: mmap.mmap | None = None
        self._tx_sock: socket.socket | None = None
        self._tx_ring: mmap.mmap | None = None
        self._big: socket.socket | None = None
        self._pending = 0
        self._slot_max = -1  # the largest frame that goes through the transmit ring
        if rings:
            try:
                self._map_rings()
            except OSError:
                self._unmap()  # a system call per frame, as without rings
            else:
                self._slot_max = min(TX_MAX - self._h, self.mtu + 18)

    def _open(self, name: str, vnet_hdr: bool, proto: int) -> socket.socket:
        # protocol 0: the socket hears nothing until bind() names the device;
        # opened with ETH_P_ALL it would queue every interface's frames meanwhile
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
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
            s.bind((name, proto))
            if proto:
                mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    def _map_rings(self) -> None:
        def ring(s: socket.socket, opt: int, n: int) -> mmap.mmap:
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            req = struct.pack("IIII", SLOT * SLOTS_PER_BLOCK, n // SLOTS_PER_BLOCK, SLOT, n)
            s.setsockopt(SOL_PACKET, opt, req)
            return mmap.mmap(s.fileno(), n * SLOT)

        self.sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
        self._ring = ring(self.sock, PACKET_RX_RING, RX_SLOTS)
        self._rmv = memoryview(self._ring)
        self._words = self._rmv.cast("I")
        self._rx = 0  # next receive slot
        self._gap: tuple[int, float] | None = None  # (empty slot, since) before a filled one
        # transmit from receive-less twins (bound to protocol 0), which no event loop
        # watches: each sent frame's completion then wakes nobody
        self._tx_sock = self._open(self.name, self.vnet_hdr, 0)
        self._tx_sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a refused frame frees its slot
        self._tx_ring = ring(self._tx_sock, PACKET_TX_RING, TX_SLOTS)
        self._tmv = memoryview(self._tx_ring)
        self._tx = 0  # next transmit slot
        # ... and one without a ring sends what a slot cannot hold
        self._big = self._open(self.name, self.vnet_hdr, 0)

    def _unmap(self) -> None:
        if self._ring is not None:
            self._words.release()
            self._rmv.release()
            self._ring.close()
            self._ring = None
        if self._tx_ring is not None:
            self._tmv.release()
            self._tx_ring.close()
            self._tx_ring = None
        for s in (self._tx_sock, self._big):
            if s is not None:
                s.close()
        self._tx_sock = self._big = None

    def fileno(self) -> int | None:
        return self.sock.fileno()

    def recv_batch(self, limit: int) -> list[Frame]:
        if self._ring is not None:
            return self._recv_ring(limit)
        out: list[Frame] = []
        for _ in range(limit):
            f = self._recv_one()
            if f is None:
                break
            if f[1]:
                out.append(f)
        return out

    def _recv_ring(self, limit: int) -> list[Frame]:
        out: list[Frame] = []
        append = out.append
        mv = self._rmv
        ring = self._ring
        assert ring is not None
        i = self._rx
        h = self._h
        status_word = self._words  # slot i's status is word i * SLOT // 4
        for _ in range(limit):
            off = _RX_OFFSETS[i]
            status, length, snap, mac = _RXHDR(mv, off)
            if status & _PLAIN != TP_STATUS_USER or snap < length:
                if not status & TP_STATUS_USER:
                    if not self._lost_slot(i):
                        break
                else:
                    f = self._recv_odd(off, status, length, snap, mac)
                    if f is not None and f[1]:
                        append(f)
                    status_word[off >> 2] = 0
            else:
                m = off + mac
                append((ring[m - h : m], ring[m : m + snap]))  # mmap slices: bytes, one step
                status_word[off >> 2] = 0  # the slot back to the kernel
            i = i + 1 if i + 1 < RX_SLOTS else 0
        self._rx = i
        return out

    def _recv_odd(self, off: int, status: int, length: int, snap: int, mac: int) -> Frame | None:
        """A slot that is not a whole untagged frame: a copy queued aside, a cut, a tag."""
        if status & TP_STATUS_COPY:
            return self._recv_one()  # the whole frame, queued to the socket
        if snap < length:
            self.truncated += 1
            return None
        mv = self._rmv
        h = self._h
        m = off + mac
        hdr = bytes(mv[m - h : m])
        frame = bytes(mv[m : m + snap])
        tci, tpid = _VLAN(mv, off + 24)  # TP_STATUS_VLAN_VALID: the kernel took the tag off
        return _retag(hdr, frame, status, tci, tpid)

    def _lost_slot(self, i: int) -> bool:
        """Whether the kernel moved past slot `i` without filling it.

        Under overload the kernel now and then leaves a slot empty and fills
        the ones after it; a reader waiting on that slot would wait forever.
        A slot that is still empty while the next one is filled, for longer
        than any copy takes, is given up (and counted as a kernel drop).
        """
        nxt = (i + 1 if i + 1 < RX_SLOTS else 0) * SLOT
        if not _U32.unpack_from(self._rmv, nxt)[0] & TP_STATUS_USER:
            self._gap = None
            return False
        now = time.monotonic()
        if self._gap is None or self._gap[0] != i:
            self._gap = (i, now)
            return False
        if now - self._gap[1] < LOST_AFTER:
            return False
        self._gap = None
        self.truncated += 1
        return True

    def _recv_one(self) -> Frame | None:
        """One frame from the socket's queue; None when it is empty, b"" frame if ours."""
        mv = self._mv
        h = self._h
        try:
            n, anc, _flags, addr = self.sock.recvmsg_into([mv], socket.CMSG_SPACE(_AUX.size))
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.ENETDOWN:
                return None  # the link went down; link state comes from rtnetlink
            if e.errno in _GONE:
                raise DeviceGone(e.errno, f"{self.name}: {e.strerror}") from None
            raise
        if addr[2] == PACKET_OUTGOING:
            return (b"", b"")
        hdr = bytes(mv[:h])
        frame = bytes(mv[h:n])
        for level, kind, data in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUX.size:
                status, _, _, _, _, tci, tpid = _AUX.unpack_from(data)
                if status & TP_STATUS_VLAN_VALID:
                    return _retag(hdr, frame, status, tci, tpid)
        return (hdr, frame)

    def send(self, hdr: bytes, frame: bytes) -> bool:
        return self.send_many(((hdr, frame),)) == 1

    def send_many(self, frames: Sequence[Frame]) -> int:
        """Write frames into the transmit ring (`flush` sends them); how many it took.

        Stops at the first frame refused (every slot still the kernel's after a
        flush): the rest of the list would be refused too.
        """
        if self._slot_max < 0:
            for n, (hdr, frame) in enumerate(frames):
                if not self._send_big(hdr, frame):
                    return n
            return len(frames)
        ring = self._tx_ring
        assert ring is not None
        mv = self._tmv
        i = self._tx
        vnet = self.vnet_hdr
        smax = self._slot_max
        no_hdr = offload.NO_HDR
        taken = 0
        written = 0  # slots filled since `_pending` was last brought up to date
        for hdr, frame in frames:
            if len(frame) > smax:
                self._tx, self._pending, written = i, self._pending + written, 0
                if not self._send_big(hdr, frame):
                    break
                taken += 1
                continue
            off = _TX_OFFSETS[i]
            if mv[off] & 7:  # still the kernel's (to send, being sent, refused)
                self._tx, self._pending, written = i, self._pending + written, 0
                self.flush()  # every slot handed over: let the kernel drain them
                if mv[off] & 7:
                    break
            # the kernel reads a slot only during our `send`: the order of these writes is free
            if vnet:
                data = (hdr or no_hdr) + frame
                n = len(data)
                ring[off + TX_DATA : off + TX_DATA + n] = data
                if data[1]:  # a GSO frame: its header length stands
                    _TXSLOT(mv, off, TP_STATUS_SEND_REQUEST, n, n)
                else:  # the whole frame in the header: one linear copy
                    _TXLINEAR(mv, off, TP_STATUS_SEND_REQUEST, n, n, data[0], 0, n - HDR)
            else:
                n = len(frame)
                ring[off + TX_DATA : off + TX_DATA + n] = frame
                _TXSLOT(mv, off, TP_STATUS_SEND_REQUEST, n, n)
            i = i + 1 if i + 1 < TX_SLOTS else 0
            written += 1
            taken += 1
        self._tx = i
        self._pending += written
        return taken

    def _send_big(self, hdr: bytes, frame: bytes) -> bool:
        """Around the ring: too big for a slot, or for the device without segmentation
        (the kernel refuses an oversized frame on the plain socket, which we count)."""
        if self._pending:
            self.flush()
        hdr = (hdr or offload.NO_HDR) if self.vnet_hdr else b""
        return self._send_plain(self._big or self.sock, hdr, frame)

    def flush(self) -> None:
        """Hand every frame written to the transmit ring to the kernel: one system call."""
        if not self._pending:
            return
        self._pending = 0
        assert self._tx_sock is not None
        try:
            self._tx_sock.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EMSGSIZE, errno.EINVAL) + _GONE:
                raise

    def _send_plain(self, sock: socket.socket, hdr: bytes, frame: bytes) -> bool:
        try:
            if len(frame) > 4096:
                sock.sendmsg((hdr, frame) if hdr else (frame,))
            else:
                sock.send(hdr + frame if hdr else frame)
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
        drops += self.truncated  # the ring's frames with no whole copy: the buffer was full
        self.truncated = 0
        self.kernel_drops += drops
        return packets, drops

    def link_up(self) -> bool:
        flags = sysfs(self.name, "flags")
        carrier = sysfs(self.name, "carrier")
        return flags is not None and bool(int(flags, 16) & 1) and carrier == "1"

    def close(self) -> None:
        self._unmap()
        self.sock.close()


def _retag(hdr: bytes, frame: bytes, status: int, tci: int, tpid: int) -> Frame:
    """Put back the VLAN tag the kernel took into metadata (ring slot or PACKET_AUXDATA)."""
    if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
        tpid = 0x8100
    return (offload.shift(hdr, 4), frame[:12] + struct.pack("!HH", tpid, tci) + frame[12:])


def set_up(name: str) -> None:
    """Bring a netdev administratively up (SIOCSIFFLAGS), as a switch does with its ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack_from("16sH", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifr))[1]
        if not flags & IFF_UP:
            ifr = struct.pack("16sH14x", name.encode(), flags | IFF_UP)
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, ifr)
