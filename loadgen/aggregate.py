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


class Merger:
    """The seconds of ``n`` sources (worker processes, agents) that each send every n-th
    arrival, merged losslessly: second t goes to ``aggregator`` once every source has
    reported t or has finished, so a second is never written with a share missing while
    its source still runs."""

    def __init__(self, n: int, aggregator: Aggregator) -> None:
        self.n = n
        self.aggregator = aggregator
        self.pending: dict[int, Interval] = {}
        self.reported = dict.fromkeys(range(n), 0)  # the last second each source sent
        self.finished: dict[int, dict | None] = {}  # None: failed or died
        self.next_t = 1

    def interval(self, source: int, interval: Interval) -> None:
        self.reported[source] = interval.t_s
        if interval.t_s in self.pending:
            self.pending[interval.t_s].merge(interval)
        else:
            self.pending[interval.t_s] = interval
        self._flush()

    def finish(self, source: int, done: dict | None) -> None:
        """``source`` sent its last second (``done``: its closing record; None: it failed)."""
        self.finished.setdefault(source, done)
        self._flush()

    @property
    def all_finished(self) -> bool:
        return len(self.finished) == self.n

    def drain(self) -> None:
        """Every second still held, in order (at the end)."""
        for t in sorted(self.pending):
            self.aggregator.add(self.pending.pop(t))

    def _flush(self) -> None:
        while self.next_t in self.pending and all(
                self.reported[s] >= self.next_t or s in self.finished for s in range(self.n)):
            self.aggregator.add(self.pending.pop(self.next_t))
            self.next_t += 1
