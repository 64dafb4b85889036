"""Send raw frames on an interface and print what comes back: a test's wire-level hands.

    python -m vnet.testing.rawio IFACE [--send HEX]... [--listen SECONDS]

Run inside a namespace (`ip netns exec`); frames received during the listen
window are printed one hex line each, VLAN tags restored from the kernel's
metadata (the switch's AF_PACKET device does the reading).  "listening" on
standard error says the socket is open.
"""

from __future__ import annotations

import argparse
import select
import sys
import time

from ..datapath.ports.af_packet import AfPacketDevice


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("iface")
    ap.add_argument("--send", action="append", default=[])
    ap.add_argument("--listen", type=float, default=0.0)
    a = ap.parse_args()
    dev = AfPacketDevice(a.iface, vnet_hdr=False, rings=False)
    print("listening", file=sys.stderr, flush=True)  # the socket hears from here on
    for h in a.send:
        dev.send(b"", bytes.fromhex(h))
    end = time.monotonic() + a.listen
    fd = dev.fileno()
    assert fd is not None
    while (left := end - time.monotonic()) > 0:
        r, _, _ = select.select([fd], [], [], left)
        if r:
            for _, frame in dev.recv_batch(64):
                print(frame.hex(), flush=True)
    dev.close()


if __name__ == "__main__":
    main()
