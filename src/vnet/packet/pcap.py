"""Reading and writing capture files: classic pcap and pcapng (Ethernet only).

Small on purpose: vnet reads captures for `vnet packet decode --pcap` and writes
them for mirrors and tests.  pcapng support covers the blocks tcpdump and
tshark write (SHB, IDB, EPB, SPB); other blocks are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PcapError", "read_frames", "write_pcap"]

_PCAP_MAGICS = {0xA1B2C3D4: "<", 0xD4C3B2A1: ">", 0xA1B23C4D: "<", 0x4D3CB2A1: ">"}
_PCAPNG_SHB = 0x0A0D0D0A
LINKTYPE_ETHERNET = 1


class PcapError(ValueError):
    pass


def read_frames(path: str | Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise PcapError(f"{path}: too short to be a capture file")
    magic_le = struct.unpack_from("<I", data)[0]
    if magic_le == _PCAPNG_SHB:
        yield from _read_pcapng(data, str(path))
        return
    endian = _PCAP_MAGICS.get(magic_le)
    if endian is None:
        raise PcapError(f"{path}: not a pcap or pcapng file (magic 0x{magic_le:08x})")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: link type {linktype} is not Ethernet")
    off = 24
    while off + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        if off + incl > len(data):
            raise PcapError(f"{path}: record at byte {off - 16} is truncated")
        yield data[off : off + incl]
        off += incl


def _read_pcapng(data: bytes, name: str) -> Iterator[bytes]:
    off = 0
    endian = "<"
    while off + 12 <= len(data):
        btype = struct.unpack_from(endian + "I", data, off)[0]
        if btype == _PCAPNG_SHB:
            bom = struct.unpack_from("<I", data, off + 8)[0]
            endian = "<" if bom == 0x1A2B3C4D else ">"
        blen = struct.unpack_from(endian + "I", data, off + 4)[0]
        if blen < 12 or off + blen > len(data):
            raise PcapError(f"{name}: block at byte {off} has bad length {blen}")
        if btype == 1:  # IDB
            lt = struct.unpack_from(endian + "H", data, off + 8)[0]
            if lt != LINKTYPE_ETHERNET:
                raise PcapError(f"{name}: link type {lt} is not Ethernet")
        elif btype == 6:  # EPB
            caplen = struct.unpack_from(endian + "I", data, off + 20)[0]
            yield data[off + 28 : off + 28 + caplen]
        elif btype == 3:  # SPB
            origlen = struct.unpack_from(endian + "I", data, off + 8)[0]
            yield data[off + 12 : off + 12 + min(origlen, blen - 16)]
        off += blen


def write_pcap(path: str | Path, frames: list[bytes], snaplen: int = 65535) -> None:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame
    Path(path).write_bytes(bytes(out))
