"""Running a probe with the load generator, and probes.csv and replicas.csv.

``run_probe`` sends a constant Poisson rate to a deployed Config's targets for at most
the rules' ``max_s``, hands each second to ``probe.Watch`` (the generator's ``until``),
and stops sending once the probe is decided; the generator then waits for every request
in flight (or its timeout), so the next probe starts on a drained server. The probe's
own run directory is a complete generator run (run.json, series.csv, latency.hlog), with
its replicas' metrics from before and after it (server_metrics.csv). It sends from this
machine (``loadgen.run.run``) or through the sweep's generator agents (``send``).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from deploy.target import DeployError, Replica
from formats.results import (
    PROBES_COLUMNS,
    PROBES_FILE,
    PROBES_SCHEMA,
    REPLICAS_COLUMNS,
    REPLICAS_FILE,
    REPLICAS_SCHEMA,
    SERVER_METRICS_FILE,
)
from loadgen import recorder
from loadgen.options import GeneratorOptions
from loadgen.recorder import Interval
from loadgen.run import Progress, RunOptions, RunResult, run
from loadgen.schedule import Profile
from sweep import scrape
from sweep.probe import LADDER, ProbeRules, Second, Watch
from sweep.search import Outcome

Send = Callable[..., RunResult]  # loadgen.run.run's signature: from here, or through the agents


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
    complete: bool  # False: stopped by Ctrl-C (not: a generator agent failed)
    replicas: tuple[dict, ...] = ()  # each replica's share of the probe (scrape.shares)

    @property
    def imbalance(self) -> str | None:
        """Replica shares off 1/R (of a valid probe: an invalid one's are not the Config's)."""
        return scrape.imbalance_note(self.replicas) if self.outcome.valid else None


def run_probe(load: GeneratorOptions, targets: Sequence[str], rate: float, rules: ProbeRules,
              out_dir: Path, *, seed: int, config_record: dict | None = None,
              server_identity: dict | None = None,
              on_progress: Callable[[Progress], None] | None = None,
              replicas: Callable[[], Sequence[Replica]] | None = None, send: Send = run) -> ProbeRun:
    """One probe at ``rate`` into ``out_dir``; its Outcome for the search. ``replicas``:
    the deployment's, read before and after the probe (their shares of it). Through
    generator agents that sent to other than one target per replica, the probe is invalid."""
    profile = Profile(kind="constant", rate=rate, duration_s=float(rules.max_s), arrivals="poisson", seed=seed)
    options = RunOptions.of(load, targets=tuple(targets), profile=profile, slo_latency_ms=rules.latency_ms)
    watch = Watch(rules)
    try:
        read = tuple(replicas()) if replicas is not None else ()
        listed = None
    except DeployError as e:
        read, listed = (), f"the replicas could not be listed: {e}"
    before = scrape.scrape_all(read)
    result = send(options, str(out_dir), config_record=config_record, server_identity=server_identity,
                  on_progress=on_progress, until=lambda iv: watch(second_of(iv, rules.latency_ms)))
    names = [r.name for r in read]
    after = scrape.scrape_all(read)
    scrape.record(out_dir / SERVER_METRICS_FILE, names, before, after)
    shares = scrape.shares(names, before, after)
    if listed:
        shares = [{"replicas": 0, "replica": "", "requests": None, "share": None, "deviation": None,
                   "imbalanced": None, "error": listed}]
    record = result.record
    reasons = list(record["validity"]["reasons"])
    sent_to = (record.get("generators") or {}).get("targets")
    if sent_to is not None and read and len(sent_to) != len(read):
        reasons.append(f"the generators sent to {len(sent_to)} targets ({', '.join(sent_to)}), not one per "
                       f"replica ({len(read)}): the Service's name did not resolve to every ready replica")
    outcome = Outcome(rate, watch.result(), valid=result.valid and len(reasons) == len(record["validity"]["reasons"]),
                      reason="; ".join(reasons))
    return ProbeRun(outcome, record, float(record["duration_s"]), not result.interrupted, tuple(shares))


def _num(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.6g}"


class _Appended:
    """A CSV file appended to and flushed row by row (nothing lost on Ctrl-C); its schema
    line and header are written when it is new."""

    def __init__(self, path: Path, schema: str, columns: Sequence[str]) -> None:
        fresh = not path.exists()
        self.columns = columns
        self._file = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._file, lineterminator="\n")
        if fresh:
            self._file.write(f"# {schema}\n")
            self._csv.writerow(columns)
            self._file.flush()

    def write(self, rows: Sequence[dict]) -> None:
        for row in rows:
            self._csv.writerow([row[c] for c in self.columns])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ProbeLog:
    """probes.csv (a row per probe) and replicas.csv (a row per replica per probe, when the
    replicas were read), appended and flushed as probes end."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / PROBES_FILE
        self._probes = _Appended(self.path, PROBES_SCHEMA, PROBES_COLUMNS)
        self._replicas: _Appended | None = None
        self.replicas_path = config_dir / REPLICAS_FILE
        self.imbalanced: list[str] = []  # the probes whose replica shares were off (their dirs)

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
        self._probes.write([row])
        if probe.replicas:
            if self._replicas is None:
                self._replicas = _Appended(self.replicas_path, REPLICAS_SCHEMA, REPLICAS_COLUMNS)
            self._replicas.write([{"config": config_id, "repeat": repeat, "probe": index, "dir": rel_dir,
                                   **{k: _num(v) if isinstance(v, float) else v for k, v in r.items()},
                                   "imbalanced": "" if r["imbalanced"] is None else int(r["imbalanced"])}
                                  for r in probe.replicas])
        if probe.imbalance:
            self.imbalanced.append(rel_dir)

    def close(self) -> None:
        self._probes.close()
        if self._replicas is not None:
            self._replicas.close()
