"""The results writer: run.json, series.csv and the two HdrHistogram interval logs.

Layout and fields are docs/results-format.md (schema version 1). Each second's row
and histogram intervals are appended and flushed when the second ends, so a killed
generator loses at most the last second; run.json is written at the start (marked
incomplete) and replaced atomically at the end.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections import Counter

from hdrh.log import HistogramLogWriter

from formats.results import (
    HIGHEST_US,
    HLOG_FILES,
    HLOG_SCHEMA,
    LOWEST_US,
    RUN_FILE,
    RUN_SCHEMA,
    SERIES_COLUMNS,
    SERIES_FILE,
    SERIES_SCHEMA,
    TOOL,
)
from loadgen import recorder
from loadgen.recorder import Interval

SEND_RATE_TOLERANCE = 0.01


def iso_utc(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def write_json_atomic(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


LAG_SHARE = 0.05  # send lag p99 may be at most this share of the latency it would distort


def send_lag_bound(*, max_send_lag_ms: float | None, slo_latency_ms: float | None,
                   p50_ms: float | None) -> tuple[float | None, str]:
    """The send-lag p99 a run may have and still be valid, with the rule that gave it.

    Latency is timed from the intended send, so a late send never flatters the server:
    shifting arrivals later by at most L moves each response of a FIFO server later by
    at most L, so every reported latency (and percentile) lies between the truth and
    the truth + L. Late sends also bunch: they displace at most rate x L arrivals, while
    the server holds rate x W requests on average (Little's law) -- again the ratio L / W.
    So the lag is judged against the latency it would distort (docs/results-format.md):

    - ``max_send_lag_ms`` given (``--max-send-lag``): that bound, as the user asked;
    - else, a run judged against an SLO: LAG_SHARE of its latency bound;
    - else: LAG_SHARE of the run's own corrected p50, its smallest reported percentile;
    - no latency at all (nothing answered): no bound (None), the lag distorts nothing.
    """
    if max_send_lag_ms is not None:
        return max_send_lag_ms, f"--max-send-lag {max_send_lag_ms:g} ms"
    if slo_latency_ms is not None:
        bound = LAG_SHARE * slo_latency_ms
        return bound, f"{LAG_SHARE:.0%} of the SLO's latency bound {slo_latency_ms:g} ms"
    if p50_ms is not None:
        bound = LAG_SHARE * p50_ms
        return bound, f"{LAG_SHARE:.0%} of the corrected p50 {p50_ms:g} ms"
    return None, "no latency measured"


def judge(*, totals: dict, send_lag_p99_ms: float | None, send_lag_bound_ms: float | None,
          send_lag_rule: str, complete: bool, out_of_range: dict, elapsed_s: float,
          duration_s: float) -> dict:
    """The validity verdict of run.json: {"valid", "reasons": [...], "send_lag_bound_ms",
    "send_lag_rule"} (the bound from ``send_lag_bound``)."""
    reasons = []
    if not complete:
        reasons.append(f"run stopped early at {elapsed_s:.1f} s of {duration_s:g} s")
    scheduled = totals["scheduled"]
    dispatched = totals["sent"] + totals["error_classes"].get("dropped", 0)
    if scheduled == 0:
        reasons.append("the schedule put no arrivals in the run")
    elif (scheduled - dispatched) / scheduled > SEND_RATE_TOLERANCE:
        reasons.append(
            f"achieved send rate missed the schedule by {100 * (scheduled - dispatched) / scheduled:.1f}%"
            f" ({dispatched} of {scheduled} arrivals sent or dropped; limit "
            f"{100 * SEND_RATE_TOLERANCE:g}%)")
    if (send_lag_p99_ms is not None and send_lag_bound_ms is not None
            and send_lag_p99_ms > send_lag_bound_ms):
        reasons.append(f"send lag p99 {send_lag_p99_ms:.2f} ms exceeds {send_lag_bound_ms:.3g} ms"
                       f" ({send_lag_rule}): the generator fell behind its schedule")
    lost = {k: v for k, v in out_of_range.items() if v}
    if lost:
        reasons.append(f"values outside the histogram range ({LOWEST_US} us - {HIGHEST_US / 1e6:g} s): "
                       + ", ".join(f"{k} {v}" for k, v in sorted(lost.items())))
    return {"valid": not reasons, "reasons": reasons,
            "send_lag_bound_ms": (None if send_lag_bound_ms is None
                                  else round(send_lag_bound_ms, 3)),
            "send_lag_rule": send_lag_rule}


class ResultsWriter:
    """Writes one run's directory. Call ``write_interval`` each second, then ``finish``."""

    def __init__(self, out_dir: str, header: dict, started_at_epoch: float | None = None) -> None:
        """``header`` holds run.json's config, server, profile, payload, targets, options.

        Every file is created (and the placeholder run.json synced to disk) here, so a
        caller can do this before choosing the schedule's origin: a sync on a busy disk
        can take 100 ms or more, and the first sends would be that late. ``start`` then
        stamps the origin (given here, it is stamped at once).
        """
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        self.header = dict(header)
        self.started_at: float | None = None
        self.totals = Interval(0)
        self.out_of_range: Counter = Counter()
        self.last_t = 0
        self.run_path = os.path.join(out_dir, RUN_FILE)
        write_json_atomic(self.run_path, self._record(
            ended=None, duration_s=0.0, complete=False,
            validity={"valid": False, "reasons": ["run did not finish"]}))
        # open for the whole run (closed in close()): appended and flushed every second
        self._series = open(os.path.join(out_dir, SERIES_FILE), "w", newline="",  # noqa: SIM115
                            encoding="utf-8")
        self._csv = csv.writer(self._series, lineterminator="\n")
        self._hlogs = {name: HistogramLogWriter(
            open(os.path.join(out_dir, filename), "w", encoding="utf-8"))  # noqa: SIM115
            for name, filename in HLOG_FILES.items()}
        if started_at_epoch is not None:
            self.start(started_at_epoch)

    def start(self, started_at_epoch: float) -> None:
        """Stamp the schedule's origin (wall clock) and write the files' headers; no sync."""
        self.started_at = started_at_epoch
        self._series.write(f"# {SERIES_SCHEMA}\n")
        self._csv.writerow(SERIES_COLUMNS)
        self._series.flush()
        for name, writer in self._hlogs.items():
            writer.output_comment(f"[{HLOG_SCHEMA}]")
            writer.output_log_format_version()
            writer.log.write(f"#[StartTime: {started_at_epoch:.3f} (seconds since epoch), "
                             f"{iso_utc(started_at_epoch)}]\n")
            writer.output_comment(f"[{name} latency in microseconds, 1 s intervals]")
            writer.output_legend()
            writer.log.flush()

    def write_interval(self, interval: Interval, target_rps: float) -> dict:
        """Append one second (already merged across workers); returns the series row."""
        t = interval.t_s
        corrected = interval.hists["corrected"]
        q = recorder.percentiles(corrected, (50.0, 90.0, 99.0))
        lag = interval.hists["send_lag"]
        have_lat, have_lag = corrected.total_count > 0, lag.total_count > 0
        row = {
            "t_s": t, "target_rps": round(target_rps, 3), "scheduled": interval.scheduled,
            "sent": interval.sent, "ok": interval.ok, "errors": interval.error_count,
            "dropped": interval.errors.get("dropped", 0),
            "error_classes": "|".join(f"{k}:{v}" for k, v in sorted(interval.errors.items())
                                      if v),
            "in_flight": interval.in_flight,
            "p50_ms": recorder.ms(q[50.0]) if have_lat else None,
            "p90_ms": recorder.ms(q[90.0]) if have_lat else None,
            "p99_ms": recorder.ms(q[99.0]) if have_lat else None,
            "max_ms": recorder.ms(corrected.get_max_value()) if have_lat else None,
            "send_lag_p99_ms": (recorder.ms(recorder.percentiles(lag, (99.0,))[99.0])
                                if have_lag else None),
        }
        self._csv.writerow([_fmt(v) if isinstance(v, float) or v is None else v
                            for v in row.values()])
        self._series.flush()
        for name, writer in self._hlogs.items():
            hist = interval.hists[name]
            hist.set_start_time_stamp((t - 1) * 1000.0)
            hist.set_end_time_stamp(t * 1000.0)
            writer.output_interval_histogram(hist, max_value_unit_ratio=1000.0)
            writer.log.flush()
        in_flight = interval.in_flight
        interval.in_flight = 0
        self.totals.t_s = t
        self.totals.merge(interval)
        self.totals.in_flight = in_flight
        self.out_of_range.update(interval.out_of_range)
        self.last_t = t
        return row

    def _record(self, *, ended: float | None, duration_s: float, complete: bool,
                validity: dict, warmup_s: float = 0.0) -> dict:
        t = self.totals
        errors = dict(sorted(t.errors.items()))
        for cls in ("timeout", "connect", "dropped"):
            errors.setdefault(cls, 0)
        h = self.header
        return {
            "schema": RUN_SCHEMA,
            "tool": dict(TOOL),
            "config": h.get("config"),
            "server": h.get("server"),
            "profile": h.get("profile"),
            "payload": h.get("payload"),
            "targets": list(h.get("targets", [])),
            "options": h.get("options"),
            "started_at": iso_utc(self.started_at) if self.started_at is not None else None,
            "ended_at": iso_utc(ended) if ended is not None else None,
            "duration_s": round(duration_s, 3),
            "warmup_s": warmup_s,
            "complete": complete,
            "totals": {"scheduled": t.scheduled, "sent": t.sent, "ok": t.ok,
                       "errors": t.error_count, "error_classes": errors},
            "latency_ms": {"corrected": recorder.summary_ms(t.hists["corrected"]),
                           "uncorrected": recorder.summary_ms(t.hists["uncorrected"])},
            "send_lag_ms": {k: v for k, v in recorder.summary_ms(t.hists["send_lag"]).items()
                            if k in ("p50", "p99", "max")},
            "out_of_range": {"latency": self.out_of_range.get("corrected", 0),
                             "uncorrected": self.out_of_range.get("uncorrected", 0),
                             "send_lag": self.out_of_range.get("send_lag", 0)},
            "validity": validity,
        }

    def finish(self, *, ended_at_epoch: float, elapsed_s: float, complete: bool,
               max_send_lag_ms: float | None = None, slo_latency_ms: float | None = None,
               warmup_s: float = 0.0, extra_reasons: list[str] | tuple[str, ...] = (),
               scheduler: dict | None = None, host_cpu: dict | None = None,
               ended_s: float | None = None, generators: dict | None = None) -> dict:
        """Write the final run.json, close the files and return the run record.

        ``ended_s``: the caller's rule ended the run at this offset of its schedule (the
        window measured, and the one the schedule is judged on); run.json's ``ended_by``
        says ``"rule"``, else ``"schedule"`` (or ``"stop"`` when incomplete).

        ``max_send_lag_ms`` / ``slo_latency_ms``: see ``send_lag_bound``. ``host_cpu``:
        what the machine's CPUs did meanwhile (``hostcpu.Usage.record()``). ``generators``:
        the agents that shared the run (``loadgen.remote``).
        """
        duration_s = float(self.header.get("profile", {}).get("duration_s") or elapsed_s)
        if ended_s is not None:
            duration_s = min(duration_s, ended_s)
        lag = self.totals.hists["send_lag"]
        lag_p99 = (recorder.ms(recorder.percentiles(lag, (99.0,))[99.0])
                   if lag.total_count else None)
        # the schedule's window that was measured (the drain after it is not part of it)
        record = self._record(ended=ended_at_epoch, duration_s=min(elapsed_s, duration_s),
                              complete=complete,
                              warmup_s=warmup_s, validity={})
        bound, rule = send_lag_bound(max_send_lag_ms=max_send_lag_ms,
                                     slo_latency_ms=slo_latency_ms,
                                     p50_ms=record["latency_ms"]["corrected"]["p50"])
        record["validity"] = judge(totals=record["totals"], send_lag_p99_ms=lag_p99,
                                   send_lag_bound_ms=bound, send_lag_rule=rule,
                                   complete=complete, out_of_range=record["out_of_range"],
                                   elapsed_s=elapsed_s, duration_s=duration_s)
        record["ended_by"] = "stop" if not complete else "rule" if ended_s is not None else "schedule"
        if scheduler is not None:
            record["scheduler"] = scheduler
        if host_cpu is not None:
            record["host_cpu"] = host_cpu
        if generators is not None:
            record["generators"] = generators
        if extra_reasons:
            record["validity"]["valid"] = False
            record["validity"]["reasons"] = record["validity"]["reasons"] + list(extra_reasons)
        self.close()
        write_json_atomic(self.run_path, record)
        return record

    def close(self) -> None:
        if not self._series.closed:
            self._series.close()
        for writer in self._hlogs.values():
            if not writer.log.closed:
                writer.close()
