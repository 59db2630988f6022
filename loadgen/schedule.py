"""Arrival schedules: pure functions of time (no clock, no I/O, no event loop).

A schedule is a piecewise-linear target rate r(t) over [0, duration). Its integral
L(t) is the expected number of arrivals by time t. Arrivals are L's inverse applied
to a sequence of "unit" points: 0, 1, 2, ... for uniform arrivals, or the cumulative
sums of seeded Exp(1) draws for Poisson arrivals (a time-changed Poisson process).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from formats import units

KINDS = ("ramp", "constant", "steps")
ARRIVALS = ("uniform", "poisson")

class ScheduleError(ValueError):
    """A profile that cannot be turned into a schedule (message says why)."""


def parse_steps(text: str) -> tuple[tuple[float, float], ...]:
    """'50:60s,100:60s' -> ((50.0, 60.0), (100.0, 60.0)) as (rate, duration_s)."""
    steps = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        rate_text, sep, dur_text = part.partition(":")
        if not sep:
            raise ScheduleError(f"bad step {part!r}: expected RATE:DURATION like 50:60s")
        try:
            rate = float(rate_text)
        except ValueError:
            raise ScheduleError(f"bad step rate {rate_text!r} in {part!r}") from None
        if not math.isfinite(rate) or rate < 0:
            raise ScheduleError(f"bad step rate {rate_text!r}: must be >= 0")
        try:
            steps.append((rate, units.parse_duration(dur_text)))
        except units.UnitError as e:
            raise ScheduleError(f"bad step {part!r}: {e}") from None
    if not steps:
        raise ScheduleError(f"no steps in {text!r}: expected e.g. 50:60s,100:60s")
    return tuple(steps)


@dataclasses.dataclass(frozen=True)
class Profile:
    """A load profile, as recorded in run.json's "profile"."""

    kind: str
    duration_s: float
    arrivals: str = "uniform"
    seed: int = 0
    rate: float | None = None
    users: int | None = None
    spawn_rate: float | None = None
    per_user_rps: float | None = None
    steps: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScheduleError(f"unknown profile {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.arrivals not in ARRIVALS:
            raise ScheduleError(f"unknown arrivals {self.arrivals!r}: use uniform or poisson")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ScheduleError(f"duration must be > 0 s, got {self.duration_s}")
        if self.kind == "constant":
            if self.rate is None or not (math.isfinite(self.rate) and self.rate > 0):
                raise ScheduleError("profile constant needs --rate R with R > 0")
        elif self.kind == "ramp":
            for name in ("users", "spawn_rate", "per_user_rps"):
                value = getattr(self, name)
                if value is None or not (math.isfinite(value) and value > 0):
                    raise ScheduleError(f"profile ramp needs {name.replace('_', '-')} > 0")
        elif self.kind == "steps" and not self.steps:
            raise ScheduleError("profile steps needs --steps like 50:60s,100:60s")

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        d = dict(d)
        steps = d.get("steps")
        if steps is not None:
            d["steps"] = tuple((float(r), float(s)) for r, s in steps)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ScheduleError(f"unknown profile fields: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["steps"] = [list(s) for s in self.steps] if self.steps is not None else None
        return d


@dataclasses.dataclass(frozen=True)
class _Segment:
    """Rate goes linearly from r0 to r1 over [t0, t1); L0 = arrivals expected before t0."""

    t0: float
    t1: float
    r0: float
    r1: float
    l0: float

    @property
    def slope(self) -> float:
        return (self.r1 - self.r0) / (self.t1 - self.t0)

    @property
    def l1(self) -> float:
        return self.l0 + (self.r0 + self.r1) / 2.0 * (self.t1 - self.t0)


def _segments(p: Profile) -> tuple[_Segment, ...]:
    pieces: list[tuple[float, float, float]] = []  # (length, r0, r1)
    if p.kind == "constant":
        pieces.append((p.duration_s, p.rate, p.rate))
    elif p.kind == "ramp":
        peak = p.users * p.per_user_rps
        ramp_s = p.users / p.spawn_rate
        if ramp_s >= p.duration_s:
            pieces.append((p.duration_s, 0.0, peak * p.duration_s / ramp_s))
        else:
            pieces.append((ramp_s, 0.0, peak))
            pieces.append((p.duration_s - ramp_s, peak, peak))
    else:
        left = p.duration_s
        for rate, length in p.steps:
            if left <= 0:
                break
            pieces.append((min(length, left), rate, rate))
            left -= length
        if left > 0:  # the last step holds until the duration ends
            pieces.append((left, p.steps[-1][0], p.steps[-1][0]))
    segs = []
    t = 0.0
    lam = 0.0
    for length, r0, r1 in pieces:
        if length <= 0:
            continue
        seg = _Segment(t, t + length, float(r0), float(r1), lam)
        segs.append(seg)
        t, lam = seg.t1, seg.l1
    return tuple(segs)


def rate_at(p: Profile, t: float) -> float:
    """Target arrival rate (per second) at time t since the start."""
    for seg in _segments(p):
        if seg.t0 <= t < seg.t1:
            return seg.r0 + seg.slope * (t - seg.t0)
    return 0.0


def expected_arrivals(p: Profile, t0: float, t1: float) -> float:
    """Arrivals the rate asks for in [t0, t1) (the integral of the rate)."""
    return _cumulative(p, t1) - _cumulative(p, t0)


def _cumulative(p: Profile, t: float) -> float:
    total = 0.0
    for seg in _segments(p):
        if t <= seg.t0:
            break
        tau = min(t, seg.t1) - seg.t0
        total = seg.l0 + seg.r0 * tau + seg.slope * tau * tau / 2.0
    return total


def _invert(segs: tuple[_Segment, ...], y: np.ndarray) -> np.ndarray:
    """Times t with L(t) = y (y sorted); NaN where y is beyond the last segment."""
    out = np.full(y.shape, np.nan)
    for seg in segs:
        mask = (y >= seg.l0) & (y < seg.l1)
        if not mask.any():
            continue
        dy = y[mask] - seg.l0
        a, b = seg.r0, seg.slope
        tau = dy / a if b == 0.0 else (np.sqrt(a * a + 2.0 * b * dy) - a) / b
        out[mask] = seg.t0 + np.minimum(tau, seg.t1 - seg.t0)
    return out


def arrival_times(p: Profile, chunk: int = 8192) -> Iterator[np.ndarray]:
    """Yield the schedule's arrival offsets (seconds since start, sorted) in chunks."""
    segs = tuple(s for s in _segments(p) if s.l1 > s.l0)
    if not segs:
        return
    total = segs[-1].l1
    rng = np.random.default_rng(p.seed) if p.arrivals == "poisson" else None
    base = 0.0
    while base < total:
        if rng is None:
            units = base + np.arange(chunk, dtype=np.float64)
            base = units[-1] + 1.0
        else:
            units = base + np.cumsum(rng.exponential(1.0, chunk))
            base = units[-1]
        times = _invert(segs, units[units < total])
        times = times[~np.isnan(times)]
        times = times[times < p.duration_s]
        if times.size:
            yield times


def scheduled_count(p: Profile) -> int:
    """Number of arrivals the whole schedule holds."""
    return sum(int(c.size) for c in arrival_times(p))
