"""Merged seconds of a run -> the results writer, and a ``Progress`` line per second for display.

The same in one process and across workers (``workers`` merges the workers' seconds first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from loadgen import recorder, schedule
from loadgen.recorder import Interval
from loadgen.results import ResultsWriter
from loadgen.schedule import Profile


@dataclasses.dataclass(frozen=True)
class Progress:
    """One second of a run, for live display."""

    t_s: int
    duration_s: float
    target_rps: float
    sent_rps: int
    ok: int
    errors: int
    in_flight: int
    p50_ms: float | None
    p99_ms: float | None


class Aggregator:
    """Receives seconds (merged across workers), writes them and reports progress."""

    def __init__(self, writer: ResultsWriter, profile: Profile,
                 on_progress: Callable[[Progress], None] | None) -> None:
        self.writer = writer
        self.profile = profile
        self.on_progress = on_progress

    def add(self, interval: Interval) -> None:
        t = interval.t_s
        target = schedule.expected_arrivals(self.profile, t - 1, t)
        row = self.writer.write_interval(interval, target_rps=target)
        if self.on_progress is not None:
            totals = self.writer.totals
            q = recorder.percentiles(totals.hists["corrected"], (50.0, 99.0))
            have = totals.hists["corrected"].total_count > 0
            self.on_progress(Progress(
                t_s=t, duration_s=self.profile.duration_s, target_rps=target,
                sent_rps=row["sent"], ok=totals.ok, errors=totals.error_count,
                in_flight=row["in_flight"], p50_ms=recorder.ms(q[50.0]) if have else None,
                p99_ms=recorder.ms(q[99.0]) if have else None))
