"""Meters (OpenFlow 1.3 §5.7): token buckets that drop what exceeds a rate.

A meter has bands; the band with the highest rate below the measured rate
applies.  vnet implements the `drop` band (the one Open vSwitch's userspace
datapath implements too) in kbps or pps, with an optional burst size.  Each
band is a token bucket refilled continuously from the clock passed in: a
packet that finds too few tokens is dropped and counted against the band.

Rates are configuration (`MeterConfig`, what METER_MOD carries); buckets and
counters are state (`MeterState`), so a modify that changes the rate starts
from a full bucket, as a new meter does.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Band", "MeterConfig", "MeterError", "MeterState", "MeterTable"]

OFPMF_KBPS = 1 << 0
OFPMF_PKTPS = 1 << 1
OFPMF_BURST = 1 << 2
OFPMF_STATS = 1 << 3
OFPMBT_DROP = 1
MAX_METERS = 1 << 16


class MeterError(ValueError):
    """kind: the OpenFlow meter_mod_failed code name."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Band:
    rate: int  # kbit/s or packets/s
    burst: int = 0  # kbit or packets; 0 = one tenth of a second at `rate`
    type: int = OFPMBT_DROP


@dataclass(frozen=True, slots=True)
class MeterConfig:
    meter_id: int
    flags: int = OFPMF_KBPS
    bands: tuple[Band, ...] = ()

    @property
    def pps(self) -> bool:
        return bool(self.flags & OFPMF_PKTPS)


class _Bucket:
    __slots__ = ("capacity", "fill_rate", "last", "tokens")

    def __init__(self, band: Band, pps: bool, now: float) -> None:
        # tokens are bits (kbps) or packets (pps)
        unit = 1 if pps else 1000
        self.fill_rate = band.rate * unit
        burst = band.burst * unit if band.burst else self.fill_rate / 10
        self.capacity = max(burst, 1 if pps else 1500 * 8)
        self.tokens = self.capacity
        self.last = now


class MeterState:
    __slots__ = ("band_drops", "buckets", "byte_count", "config", "created", "packet_count")

    def __init__(self, config: MeterConfig, now: float) -> None:
        self.config = config
        self.buckets = [_Bucket(b, config.pps, now) for b in config.bands]
        self.band_drops = [0] * len(config.bands)
        self.packet_count = 0
        self.byte_count = 0
        self.created = now

    def admit(self, nbytes: int, now: float) -> bool:
        self.packet_count += 1
        self.byte_count += nbytes
        cost = 1 if self.config.pps else nbytes * 8
        ok = True
        for i, b in enumerate(self.buckets):
            b.tokens = min(b.capacity, b.tokens + (now - b.last) * b.fill_rate)
            b.last = now
            if b.tokens >= cost:
                b.tokens -= cost
            else:
                self.band_drops[i] += 1
                ok = False
        return ok


class MeterTable:
    def __init__(self) -> None:
        self.meters: dict[int, MeterState] = {}

    def check(self, cfg: MeterConfig, command: str) -> None:
        mid = cfg.meter_id
        if not 1 <= mid <= MAX_METERS:
            raise MeterError("invalid_meter", f"meter id {mid} out of range 1-{MAX_METERS}")
        if command == "delete":
            return
        if command == "add" and mid in self.meters:
            raise MeterError("meter_exists", f"meter {mid} already exists")
        if command == "modify" and mid not in self.meters:
            raise MeterError("unknown_meter", f"meter {mid} does not exist")
        if cfg.flags & OFPMF_KBPS and cfg.flags & OFPMF_PKTPS:
            raise MeterError("bad_flags", "meter flags: kbps and pktps are exclusive")
        if not cfg.bands:
            raise MeterError("bad_band", f"meter {mid}: no band")
        for b in cfg.bands:
            if b.type != OFPMBT_DROP:
                raise MeterError("bad_band", f"meter {mid}: only drop bands are supported")
            if b.rate <= 0:
                raise MeterError("bad_rate", f"meter {mid}: band rate must be positive")

    def apply(self, cfg: MeterConfig, command: str, now: float) -> None:
        self.check(cfg, command)
        if command == "delete":
            self.meters.pop(cfg.meter_id, None)
        else:
            self.meters[cfg.meter_id] = MeterState(cfg, now)

    def admit(self, meter_id: int, nbytes: int, now: float) -> bool:
        m = self.meters.get(meter_id)
        return True if m is None else m.admit(nbytes, now)
