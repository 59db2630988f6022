"""Recording: cheap appends on the request path, HdrHistograms once per interval.

The engine appends raw seconds to plain lists (tens of ns each). Once per second
``Recorder.take_interval`` turns the lists into integer microseconds with numpy and
adds them to the histograms' counters in one vectorised step (the same counts
``record_value`` would produce), counting values outside the range instead of
dropping them silently. Intervals from several workers merge losslessly.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
from hdrh.histogram import HdrHistogram

from formats.results import HIGHEST_US, LOWEST_US, SIGNIFICANT_FIGURES

HISTOGRAMS = ("corrected", "uncorrected", "send_lag")


def new_histogram() -> HdrHistogram:
    """A histogram with the project's fixed range (1 us - 60 s) and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def _counts_view(hist: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(hist.counts)


def counts_indices(hist: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """Vectorised ``hist._counts_index_for`` for non-negative int64 values."""
    v = values.astype(np.int64)
    masked = v | np.int64(hist.sub_bucket_mask)
    _, exponent = np.frexp(masked.astype(np.float64))  # bit length, exact below 2**53
    bucket = exponent.astype(np.int64) - hist.unit_magnitude - (
        hist.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + hist.unit_magnitude)
    return ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + (
        sub_bucket - hist.sub_bucket_half_count)


def load_values(hist: HdrHistogram, values_us: np.ndarray) -> int:
    """Add integer microsecond values to ``hist``; return how many were out of range."""
    values_us = np.asarray(values_us, dtype=np.int64)
    if values_us.size == 0:
        return 0
    negative = values_us < 0
    idx = counts_indices(hist, np.where(negative, 0, values_us))
    ok = ~negative & (idx < hist.counts_len)
    out_of_range = int(values_us.size - np.count_nonzero(ok))
    if out_of_range:
        values_us, idx = values_us[ok], idx[ok]
        if values_us.size == 0:
            return out_of_range
    _counts_view(hist)[:] += np.bincount(idx, minlength=hist.counts_len).astype(np.uint64)
    hist.total_count += int(values_us.size)
    hist.min_value = min(hist.min_value, int(values_us.min()))
    hist.max_value = max(hist.max_value, int(values_us.max()))
    return out_of_range


def values_from_indices(hist: HdrHistogram, idx: np.ndarray) -> np.ndarray:
    """Vectorised highest-equivalent value of counts indices (as hdrh reports)."""
    idx = np.asarray(idx, dtype=np.int64)
    bucket = (idx >> hist.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (idx & (hist.sub_bucket_half_count - 1)) + hist.sub_bucket_half_count
    low = bucket < 0
    sub_bucket = np.where(low, sub_bucket - hist.sub_bucket_half_count, sub_bucket)
    bucket = np.where(low, 0, bucket)
    value = sub_bucket << (bucket + hist.unit_magnitude)
    # size of the equivalent range at value, minus one -> highest equivalent value
    magnitude = np.where(sub_bucket >= hist.sub_bucket_count, bucket + 1, bucket)
    return value + (np.int64(1) << (hist.unit_magnitude + magnitude)) - 1


def percentiles(hist: HdrHistogram, pcts: tuple[float, ...]) -> dict[float, int]:
    """Values at the given percentiles, as ``get_value_at_percentile`` (vectorised)."""
    if hist.total_count == 0:
        return {p: 0 for p in pcts}
    cum = np.cumsum(_counts_view(hist), dtype=np.int64)
    out = {}
    for p in pcts:
        rank = max(int(min(p, 100.0) * hist.total_count / 100 + 0.5), 1)
        idx = int(np.searchsorted(cum, rank, side="left"))
        out[p] = int(values_from_indices(hist, np.array([idx]))[0])
    return out


def count_above(hist: HdrHistogram, value_us: int) -> int:
    """How many recorded values lie above ``value_us`` (values within the histogram's
    precision of it count as not above)."""
    if hist.total_count == 0:
        return 0
    idx = int(counts_indices(hist, np.array([max(0, int(value_us))]))[0])
    if idx >= hist.counts_len:
        return 0
    return int(_counts_view(hist)[idx + 1:].sum())


def mean_us(hist: HdrHistogram) -> float | None:
    """The mean of the recorded values (each at its bucket's highest equivalent value),
    vectorised: hdrh's ``get_mean_value`` walks every bucket in Python (~20 ms)."""
    if hist.total_count == 0:
        return None
    counts = _counts_view(hist)
    idx = np.flatnonzero(counts)
    return float(counts[idx].astype(np.float64) @ values_from_indices(hist, idx).astype(np.float64)) / hist.total_count


def ms(value_us: float) -> float:
    return round(value_us / 1000.0, 3)


def summary_ms(hist: HdrHistogram) -> dict:
    """{"count", "mean", "p50", "p90", "p99", "p99_9", "max"} in milliseconds."""
    if hist.total_count == 0:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None,
                "p99_9": None, "max": None}
    q = percentiles(hist, (50.0, 90.0, 99.0, 99.9))
    return {"count": int(hist.total_count), "mean": ms(hist.get_mean_value()),
            "p50": ms(q[50.0]), "p90": ms(q[90.0]), "p99": ms(q[99.0]),
            "p99_9": ms(q[99.9]), "max": ms(hist.get_max_value())}


@dataclasses.dataclass
class Interval:
    """What happened in one second of the run (one worker's share, or merged)."""

    t_s: int
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: Counter = dataclasses.field(default_factory=Counter)
    in_flight: int = 0
    out_of_range: Counter = dataclasses.field(default_factory=Counter)
    hists: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in HISTOGRAMS:
            self.hists.setdefault(name, new_histogram())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def merge(self, other: Interval) -> None:
        if other.t_s != self.t_s:
            raise ValueError(f"cannot merge second {other.t_s} into second {self.t_s}")
        self.scheduled += other.scheduled
        self.sent += other.sent
        self.ok += other.ok
        self.errors.update(other.errors)
        self.in_flight += other.in_flight
        self.out_of_range.update(other.out_of_range)
        for name in HISTOGRAMS:
            self.hists[name].add(other.hists[name])

    def to_wire(self) -> dict:
        """A compact form for crossing processes or the network (picklable and JSON: the
        histograms encoded as base64 text)."""
        return {"t_s": self.t_s, "scheduled": self.scheduled, "sent": self.sent,
                "ok": self.ok, "errors": dict(self.errors), "in_flight": self.in_flight,
                "out_of_range": dict(self.out_of_range),
                "hists": {k: h.encode().decode("ascii") for k, h in self.hists.items()}}

    @classmethod
    def from_wire(cls, d: dict) -> Interval:
        interval = cls(d["t_s"], d["scheduled"], d["sent"], d["ok"], Counter(d["errors"]),
                       d["in_flight"], Counter(d["out_of_range"]))
        for name, blob in d["hists"].items():
            interval.hists[name].decode_and_add(blob)
        return interval


class Recorder:
    """One worker's recorder. The engine calls the cheap methods on every request."""

    __slots__ = (
        "_hists",
        "_out_of_range",
        "corrected",
        "errors",
        "ok",
        "scheduled",
        "send_lag",
        "sent",
        "uncorrected",
    )

    def __init__(self) -> None:
        self.corrected: list[float] = []
        self.uncorrected: list[float] = []
        self.send_lag: list[float] = []
        self.sent = 0
        self.ok = 0
        self.errors: Counter = Counter()
        self.scheduled: Counter = Counter()  # second index -> arrivals the schedule put there
        self._hists = {name: new_histogram() for name in HISTOGRAMS}
        self._out_of_range: Counter = Counter()

    # -- request path -------------------------------------------------------
    def on_send(self, intended: float, actual: float) -> None:
        self.sent += 1
        self.send_lag.append(actual - intended)

    def on_ok(self, intended: float, actual: float, done: float) -> None:
        self.ok += 1
        self.corrected.append(done - intended)
        self.uncorrected.append(done - actual)

    def on_error(self, error_class: str) -> None:
        self.errors[error_class] += 1

    def add_scheduled(self, offsets: np.ndarray) -> None:
        """Count arrivals per second of the schedule (offsets in seconds since start)."""
        seconds, counts = np.unique(np.floor(offsets).astype(np.int64), return_counts=True)
        for s, c in zip(seconds.tolist(), counts.tolist(), strict=True):
            self.scheduled[s] += c

    # -- a few times per interval ----------------------------------------------
    def absorb(self) -> None:
        """Move the buffered values into this second's histograms (vectorised).

        Called several times a second so that no single call blocks the loop long.
        """
        for name in HISTOGRAMS:
            buf = getattr(self, name)
            if not buf:
                continue
            setattr(self, name, [])
            us = np.rint(np.asarray(buf, dtype=np.float64) * 1e6).astype(np.int64)
            if name == "send_lag":
                us = np.maximum(us, 0)  # never early; guard clock rounding
            oor = load_values(self._hists[name], us)
            if oor:
                self._out_of_range[name] += oor

    def take_interval(self, t_s: int, in_flight: int) -> Interval:
        """Everything recorded since the last call, as second ``t_s`` (1-based end)."""
        self.absorb()
        interval = Interval(t_s, scheduled=self.scheduled.pop(t_s - 1, 0), sent=self.sent,
                            ok=self.ok, errors=self.errors, in_flight=in_flight,
                            out_of_range=self._out_of_range, hists=self._hists)
        self._hists = {name: new_histogram() for name in HISTOGRAMS}
        self._out_of_range = Counter()
        self.sent = 0
        self.ok = 0
        self.errors = Counter()
        return interval

    def pending_scheduled(self) -> int:
        return sum(self.scheduled.values())
