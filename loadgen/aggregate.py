"""Merged seconds of a run -> the results writer, a ``Progress`` line per second for display,
and the caller's rule for ending the run early (``until``).

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


# A caller's rule: shown each merged second (after it is written), True ends the run there.
Until = Callable[[Interval], bool]


class Aggregator:
    """Receives seconds (merged across workers), writes them, reports progress and asks
    ``until`` whether to end the run (``end`` is called once, the first time it says so)."""

    def __init__(self, writer: ResultsWriter, profile: Profile,
                 on_progress: Callable[[Progress], None] | None,
                 until: Until | None = None, end: Callable[[], None] = lambda: None) -> None:
        self.writer = writer
        self.profile = profile
        self.on_progress = on_progress
        self.until = until
        self.end = end
        self.ended = False

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
        if self.until is not None and not self.ended and self.until(interval):
            self.ended = True
            self.end()
