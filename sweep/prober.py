"""Running a probe with the load generator, and probes.csv.

``run_probe`` sends a constant Poisson rate to a deployed Config's targets for at most
the rules' ``max_s``, hands each second to ``probe.Watch`` (the generator's ``until``),
and stops sending once the probe is decided; the generator then waits for every request
in flight (or its timeout), so the next probe starts on a drained server. The probe's
own run directory is a complete generator run (run.json, series.csv, latency.hlog).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from formats.results import PROBES_COLUMNS, PROBES_FILE, PROBES_SCHEMA
from loadgen import recorder
from loadgen.options import GeneratorOptions
from loadgen.recorder import Interval
from loadgen.run import Progress, RunOptions, run
from loadgen.schedule import Profile
from sweep.probe import LADDER, ProbeRules, Second, Watch
from sweep.search import Outcome


def second_of(interval: Interval, latency_ms: float) -> Second:
    """One generator second as the probe's rule sees it."""
    hist = interval.hists["corrected"]
    errors = interval.error_count
    bound_us = latency_ms * 1000.0
    ladder = tuple(recorder.count_above(hist, int(bound_us * k)) + errors for k in LADDER)
    mean = recorder.mean_us(hist)
    return Second(t_s=interval.t_s, requests=interval.ok + errors, over=ladder[0], errors=errors,
                  in_flight=interval.in_flight,
                  mean_ms=None if mean is None else mean / 1000.0, ladder=ladder)


@dataclasses.dataclass(frozen=True)
class ProbeRun:
    outcome: Outcome
    record: dict  # the probe's run.json
    seconds: float  # schedule seconds that ran
    complete: bool  # False: stopped by Ctrl-C


def run_probe(load: GeneratorOptions, targets: Sequence[str], rate: float, rules: ProbeRules,
              out_dir: Path, *, seed: int, config_record: dict | None = None,
              server_identity: dict | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> ProbeRun:
    """One probe at ``rate`` into ``out_dir``; its Outcome for the search."""
    profile = Profile(kind="constant", rate=rate, duration_s=float(rules.max_s), arrivals="poisson", seed=seed)
    options = RunOptions.of(load, targets=tuple(targets), profile=profile, slo_latency_ms=rules.latency_ms)
    watch = Watch(rules)
    result = run(options, str(out_dir), config_record=config_record, server_identity=server_identity,
                 on_progress=on_progress, until=lambda iv: watch(second_of(iv, rules.latency_ms)))
    record = result.record
    reasons = record["validity"]["reasons"]
    outcome = Outcome(rate, watch.result(), valid=result.valid, reason="; ".join(reasons))
    return ProbeRun(outcome, record, float(record["duration_s"]), result.complete)


def _num(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.6g}"


class ProbeLog:
    """probes.csv, appended and flushed a row per probe (nothing lost on Ctrl-C)."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / PROBES_FILE
        fresh = not self.path.exists()
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._file, lineterminator="\n")
        if fresh:
            self._file.write(f"# {PROBES_SCHEMA}\n")
            self._csv.writerow(PROBES_COLUMNS)
            self._file.flush()

    def write(self, config_id: str, repeat: int, index: int, probe: ProbeRun, rel_dir: str) -> None:
        d, rec = probe.outcome.decision, probe.record
        lat = rec["latency_ms"]["corrected"]
        classes = "|".join(f"{k}:{v}" for k, v in sorted(rec["totals"]["error_classes"].items()) if v)
        row = {"config": config_id, "repeat": repeat, "probe": index, "rate": _num(probe.outcome.rate),
               "seconds": _num(probe.seconds), "requests": d.requests, "over": d.over, "errors": d.errors,
               "error_classes": classes, "p50_ms": _num(lat["p50"]), "p90_ms": _num(lat["p90"]),
               "p99_ms": _num(lat["p99"]), "inflation": _num(d.inflation), "over_lo": _num(d.over_lo),
               "over_hi": _num(d.over_hi), "backlog_slope": _num(d.backlog_slope),
               "verdict": d.outcome, "marginal": int(d.marginal), "valid": int(probe.outcome.valid),
               "reason": probe.outcome.reason or d.reason, "dir": rel_dir}
        self._csv.writerow([row[c] for c in PROBES_COLUMNS])
        self._file.flush()

    def close(self) -> None:
        self._file.close()
