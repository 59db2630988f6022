"""HdrHistogram interval logs (latency.hlog): read per-second intervals, merge, take percentiles."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from analysis.errors import ResultsError
from formats.results import HIGHEST_US, HLOG_SCHEMA, LOWEST_US, SIGNIFICANT_FIGURES

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# a "#[servesweep.hlog/<any version>]" header line: the version is checked against HLOG_SCHEMA
_SCHEMA_RE = re.compile(r"^#\[(" + re.escape(HLOG_SCHEMA.partition("/")[0]) + r"/[^\]]*)\]")


@dataclass(frozen=True, eq=False)
class Interval:
    """One interval of the log: [start_s, end_s) seconds since the run's start."""

    start_s: float
    end_s: float
    histogram: HdrHistogram

    @property
    def second(self) -> int:
        """The series.csv `t_s` this interval belongs to (end of its second)."""
        return round(self.end_s)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def _check_schema(path: Path) -> None:
    if not path.is_file():
        raise ResultsError(f"{path}: file missing")
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = _SCHEMA_RE.match(line)
            if m:
                if m.group(1) != HLOG_SCHEMA:
                    raise ResultsError(f"{path}: unknown schema {m.group(1)!r} (expected {HLOG_SCHEMA!r})")
                return
    raise ResultsError(f"{path}: no '#[{HLOG_SCHEMA}]' line in the header; not a servesweep latency log")


def read_log(path: Path | str) -> list[Interval]:
    """Every interval of an HdrHistogram log, with times relative to the log's StartTime."""
    path = Path(path)
    _check_schema(path)
    reader = HistogramLogReader(str(path), new_histogram())
    out: list[Interval] = []
    try:
        while True:
            hist = reader.get_next_interval_histogram()
            if hist is None:
                break
            start = hist.get_start_time_stamp() / 1000.0 - reader.get_start_time_sec()
            end = hist.get_end_time_stamp() / 1000.0 - reader.get_start_time_sec()
            out.append(Interval(start_s=round(start, 3), end_s=round(end, 3), histogram=hist))
    except Exception as e:  # hdrh raises assorted types (zlib.error, custom cookie errors, ValueError)
        raise ResultsError(f"{path}: corrupt interval {len(out) + 1} ({type(e).__name__}: {e})") from e
    finally:
        reader.input_file.close()
    return out


def by_second(intervals: Iterable[Interval]) -> dict[int, HdrHistogram]:
    """Map series `t_s` -> that second's histogram (merging if a second appears twice)."""
    out: dict[int, HdrHistogram] = {}
    for iv in intervals:
        if iv.second in out:
            out[iv.second] = merge([out[iv.second], iv.histogram])
        else:
            out[iv.second] = iv.histogram
    return out


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """Lossless sum of histograms into a fresh one (1 µs – 60 s, 3 digits)."""
    total = new_histogram()
    for h in histograms:
        if h.get_total_count():
            total.add(h)
    return total


def percentiles_ms(hist: HdrHistogram, percentiles: Iterable[float] = PERCENTILES) -> dict[str, float | None]:
    """{'p50': ms, ..., 'p99_9': ms, 'max': ms, 'count': n}; None when empty.

    (No mean: hdrh computes it by walking every bucket in Python, which is slow.)
    """
    keys = {p: "p" + f"{p:g}".replace(".", "_") for p in percentiles}
    if not hist.get_total_count():
        return {**{k: None for k in keys.values()}, "max": None, "count": 0}
    out: dict[str, float | None] = {k: hist.get_value_at_percentile(p) / 1000.0 for p, k in keys.items()}
    out["max"] = hist.get_max_value() / 1000.0
    out["count"] = hist.get_total_count()
    return out


def spectrum_ms(hist: HdrHistogram, max_nines: int = 5) -> tuple[list[float], list[float]]:
    """Latency (ms) at percentiles spaced evenly in 'nines' (50, 90, 99, ... up to the data)."""
    count = hist.get_total_count()
    if not count:
        return [], []
    pcts: list[float] = []
    steps = 20
    for i in range(steps * max_nines + 1):
        p = 100.0 * (1.0 - 0.5 * 10 ** (-i / steps * 1.0))  # 50% .. 99.9995%
        # stop once the tail has fewer than one sample beyond p
        if (100.0 - p) / 100.0 * count < 1.0 and pcts:
            break
        pcts.append(p)
    values = [hist.get_value_at_percentile(p) / 1000.0 for p in pcts]
    # the maximum, placed at the percentile of the last sample (1 - 1/count)
    pcts.append(max(pcts[-1], 100.0 * (1.0 - 1.0 / count)))
    values.append(hist.get_max_value() / 1000.0)
    return pcts, values
