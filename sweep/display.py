"""Sweep progress for a person: one live line on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from typing import TextIO

from sweep.loop import Event, SweepOutcome


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def event_text(e: Event) -> str:
    head = f"[{e.index}/{e.total}] {e.name}: {e.phase}"
    if e.progress is not None:
        p = e.progress
        head += (f" {p.t_s}/{p.duration_s:.0f}s target {p.target_rps:.1f}/s sent {p.sent_rps}/s "
                 f"ok {p.ok} err {p.errors} in-flight {p.in_flight} p50 {_ms(p.p50_ms)} ms p99 {_ms(p.p99_ms)} ms")
    elif e.detail:
        head += f" ({e.detail})"
    if e.eta_s is not None:
        head += f" | sweep ETA {duration_text(e.eta_s)}"
    return head


class Display:
    """Writes events; on a TTY the loading line is rewritten in place."""

    def __init__(self, stream: TextIO, log_every_s: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.log_every_s = log_every_s
        self._last_log = 0.0
        self._live = False

    def line(self, text: str) -> None:
        self._end_live()
        print(text, file=self.stream, flush=True)

    def _end_live(self) -> None:
        if self._live:
            print(file=self.stream)
            self._live = False

    def event(self, e: Event) -> None:
        text = event_text(e)
        if e.progress is None:
            self.line(text)
            return
        if self.tty:
            print("\r\x1b[2K" + text, end="", file=self.stream, flush=True)
            self._live = True
        elif time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            self.line(text)

    def done(self, outcome: SweepOutcome) -> None:
        self._end_live()
        counts = ", ".join(f"{outcome.count(s)} {s}" for s in ("done", "skipped", "failed", "interrupted")
                           if outcome.count(s))
        self.line(f"sweep {'interrupted' if outcome.interrupted else 'finished'} in "
                  f"{duration_text(outcome.seconds)}: {counts}")
        for o in outcome.outcomes:
            if o.status in ("failed", "interrupted") or o.problems:
                self.line(f"  {o.name} ({o.config_id}): {o.status}: {o.error}")
            elif o.valid is False:
                self.line(f"  {o.name} ({o.config_id}): measured, but the run is INVALID (see its run.json)")

    def report(self, report, out_dir) -> None:
        self.line(f"report: {report.index_html}")
        self.line(f"recommendation: {report.recommendation}")
        drift = report.analysis.drift
        if drift is not None and drift.notable:
            self.line(f"drift: {drift.text()}")
