"""The search method of a sweep: every Config's capacity, its probes interleaved.

For each Config: deploy, warm up, a closed-loop saturation step for the first guess,
then ``repeats`` independent searches (``sweep.search``). When the backend holds many
Configs at once (the local one), every Config stays up and the next probe of all
unfinished searches is taken in a seeded random order, round after round, so drift on
the machine hits every Config alike. Otherwise Configs are measured in blocks (deploy,
one search, tear down), the block order reversed on every other repeat.

Each Config directory gets probes.csv (a row per probe, appended as it goes), one run
directory per probe under probes/, and, at the end, run.json with the capacity
(docs/results-format.md "The capacity search").
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import statistics
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Protocol

from deploy.target import Backend, Replica, Target
from formats.results import PROBES_DIR, RUN_FILE, RUN_SCHEMA, SERVER_METRICS_FILE, TOOL
from formats.slo import Slo
from loadgen import payload as payload_mod
from loadgen.options import GeneratorOptions
from loadgen.run import run
from sweep import common_rate, scrape
from sweep.agents import Generators
from sweep.bringup import prepare
from sweep.events import ConfigOutcome, Event
from sweep.probe import ProbeRules
from sweep.prober import ProbeLog, run_probe
from sweep.search import Capacity, Found, Outcome, SearchRules, combine, search
from sweep.status import Status, fresh_dir, now_utc, write_json
from sweep.warmup import WarmupOptions


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    repeats: int = 2  # the default sweep: two interleaved searches per Config (~25 min on 2 cores)
    resolution: float = 0.03
    confidence: float = 0.95
    max_probe_s: int = 40
    min_probe_s: int = 13
    transient_s: int = 3
    seed: int = 1  # interleaving order and the probes' arrival seeds
    saturation_s: float = 5.0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError("repeats must be >= 1")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError("confidence must lie in [0.5, 1)")
        self.search_rules()  # their own checks
        ProbeRules(latency_ms=1.0, transient_s=self.transient_s, min_s=self.min_probe_s, max_s=self.max_probe_s)

    def probe_rules(self, slo: Slo) -> ProbeRules:
        return ProbeRules.from_slo(slo, confidence=self.confidence, transient_s=self.transient_s,
                                   min_s=self.min_probe_s, max_s=self.max_probe_s)

    def search_rules(self) -> SearchRules:
        return SearchRules(resolution=self.resolution)

    def record(self) -> dict:
        return dataclasses.asdict(self)


class Measured(Protocol):
    """What the search needs of a Config (deploy's Config, or an already running endpoint)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def protocol(self) -> str: ...  # the API its load speaks (formats.results.PROTOCOLS)

    def to_record(self) -> dict: ...


Bodies = Callable[[str, str], payload_mod.Payload]  # (protocol, model) -> the payload so encoded


def bodies(spec: str) -> Bodies:
    """The sweep's one logical payload (``tensor``, ``b64``, ``file:PATH``), encoded once
    per protocol and model; PayloadError for a bad spec."""
    return functools.cache(lambda protocol, model: payload_mod.load(spec, protocol=protocol, model=model))


@dataclasses.dataclass
class Subject:
    """One Config being searched."""

    index: int
    config: Measured
    dir: Path
    status: Status
    log: ProbeLog
    target: Target | None = None
    urls: tuple[str, ...] = ()  # the generator's targets: the Target's, in the Config's protocol
    body: payload_mod.Payload | None = None  # the payload in that protocol
    guess: float | None = None
    searches: dict[int, Generator[float, Outcome, Found]] = dataclasses.field(default_factory=dict)
    rates: dict[int, float] = dataclasses.field(default_factory=dict)  # repeat -> next rate
    found: dict[int, Found] = dataclasses.field(default_factory=dict)
    probes: dict[int, int] = dataclasses.field(default_factory=dict)  # repeat -> probes run
    seconds: float = 0.0
    totals: dict = dataclasses.field(default_factory=dict)  # summed over the probes
    best_pass: dict | None = None
    failed: str | None = None
    common_probe: dict | None = None  # REST vs gRPC at one rate (sweep.common_rate)
    read: tuple[Replica, ...] = ()  # the replicas whose metrics were scraped before probing
    before: list = dataclasses.field(default_factory=list)  # metrics scraped before probing
    after: list = dataclasses.field(default_factory=list)  # ... and after it (before a teardown)
    started: str = dataclasses.field(default_factory=now_utc)


@dataclasses.dataclass(frozen=True)
class ProbeEvent:
    """A probe is about to run (``running``) or has a verdict."""

    subject: Subject
    repeat: int
    probe: int
    rate: float
    verdict: str | None = None
    detail: str = ""


class Eta:
    """Seconds left: probes expected (``expected_probes`` a search, or what searches took)
    times the measured seconds a probe costs, drain and bookkeeping included. A search's
    first probe (at the saturation guess, above capacity: a FAIL within seconds) and its
    later ones (near capacity: mostly their longest) are costed apart, so the quick first
    probes do not make the sweep's start promise half the time it takes."""

    def __init__(self, searches: int, options: SearchOptions) -> None:
        self.expected = expected_probes(options)
        self.left = searches
        self.done_probes: list[int] = []
        self.first_costs: list[float] = []
        self.later_costs: list[float] = []
        self.default_probe_s = probe_cost_s(options)
        self.running: dict[tuple[int, int], int] = {}

    def probe(self, key: tuple[int, int], seconds: float) -> None:
        self.running[key] = self.running.get(key, 0) + 1
        (self.first_costs if self.running[key] == 1 else self.later_costs).append(seconds)

    def finish(self, key: tuple[int, int]) -> None:
        self.done_probes.append(self.running.pop(key, 0))
        self.left -= 1

    def eta(self) -> float:
        per_search = (sum(self.done_probes) / len(self.done_probes)) if self.done_probes else self.expected
        first = statistics.fmean(self.first_costs) if self.first_costs else self.default_probe_s
        later = statistics.fmean(self.later_costs) if self.later_costs else self.default_probe_s
        seconds = sum(max(1.0, per_search - n) for n in self.running.values()) * later
        unstarted = max(0, self.left - len(self.running))
        return seconds + unstarted * (first + max(0.0, per_search - 1.0) * later)


def expected_probes(options: SearchOptions) -> float:
    """Probes a search is expected to take: about two to bracket, then the bisections."""
    rules = options.search_rules()
    return 2.0 + math.ceil(math.log2(math.log(rules.step) / math.log1p(rules.resolution)))


def probe_cost_s(options: SearchOptions) -> float:
    """Expected seconds a probe costs: most probes near capacity run to ``max_probe_s``
    (the default ResNet50 sweep: 23 probes, 32 s each with 13-40 s probes), plus the drain."""
    return 0.75 * options.max_probe_s + 0.25 * options.min_probe_s + 2.0


def plan_seconds(configs: int, options: SearchOptions) -> float:
    """Expected duration of a search sweep's probing before it starts."""
    return configs * options.repeats * expected_probes(options) * probe_cost_s(options)


def fit_budget(configs: int, options: SearchOptions, budget_s: float) -> tuple[SearchOptions, list[str]]:
    """Fewer repeats, then a coarser resolution, then shorter probes, until the plan fits
    ``budget_s``; returns the options and what was given up, in words."""
    given_up = []
    repeats = options.repeats
    while plan_seconds(configs, options) > budget_s and options.repeats > 1:
        options = dataclasses.replace(options, repeats=options.repeats - 1)
    if options.repeats != repeats:
        given_up.append(f"repeats {repeats} -> {options.repeats}")
    for resolution in (0.05, 0.10):
        if plan_seconds(configs, options) > budget_s and options.resolution < resolution:
            given_up.append(f"resolution {options.resolution:.0%} -> {resolution:.0%}")
            options = dataclasses.replace(options, resolution=resolution)
    for max_s in (30, 20):
        if plan_seconds(configs, options) > budget_s and options.max_probe_s > max_s:
            given_up.append(f"longest probe {options.max_probe_s} s -> {max_s} s")
            options = dataclasses.replace(options, max_probe_s=max_s, min_probe_s=min(options.min_probe_s, max_s))
    return options, given_up


def capacity_record(subject: Subject, capacity: Capacity, *, slo: Slo, options: SearchOptions,
                    load: GeneratorOptions, complete: bool) -> dict:
    """The Config's run.json for the search method."""
    target = subject.target
    reasons = [f"repeat {r}: {f.error}" for r, f in sorted(subject.found.items()) if f.error]
    if subject.failed:
        reasons.append(subject.failed)
    if not complete:
        reasons.append("stopped before every search finished")
    return {
        "schema": RUN_SCHEMA, "tool": dict(TOOL), "method": "search",
        "config": subject.config.to_record(),
        "server": dict(target.identity) if target else None,
        "payload": subject.body.record() if subject.body else None, "targets": list(subject.urls),
        "options": load.to_mapping(), "slo": slo.to_dict(),
        "rules": options.record(), "guess_rps": subject.guess,
        "capacity": {"rps": capacity.rps, "lo": capacity.lo, "hi": capacity.hi, "repeats": capacity.repeats,
                     "points": list(capacity.points), "errors": list(capacity.errors)},
        "searches": [{"repeat": r, "capacity": f.capacity, "lo": f.lo, "hi": None if math.isinf(f.hi) else f.hi,
                      "ci_lo": f.ci_lo, "ci_hi": None if math.isinf(f.ci_hi) else f.ci_hi, "probes": f.probes,
                      "converged": f.converged, "error": f.error} for r, f in sorted(subject.found.items())],
        "probes": sum(subject.probes.values()),
        "best_pass": subject.best_pass,
        "common_probe": subject.common_probe,
        "started_at": subject.started, "ended_at": now_utc(), "duration_s": round(subject.seconds, 3),
        "complete": complete,
        "totals": subject.totals or {"scheduled": 0, "sent": 0, "ok": 0, "errors": 0, "error_classes": {}},
        "validity": {"valid": capacity.rps is not None and not reasons, "reasons": reasons},
    }


def add_totals(into: dict, totals: dict) -> None:
    """Adds one probe's run.json totals to ``into`` (the Config's, over its probes)."""
    for key in ("scheduled", "sent", "ok", "errors"):
        into[key] = into.get(key, 0) + totals[key]
    classes = into.setdefault("error_classes", {})
    for key, value in totals["error_classes"].items():
        classes[key] = classes.get(key, 0) + value


class Prober:
    """Runs the next probe of one (Config, repeat) search and feeds the search its outcome."""

    def __init__(self, load: GeneratorOptions, rules: ProbeRules, options: SearchOptions,
                 on_probe: Callable[[ProbeEvent], None], eta: Eta, agents: Generators | None = None) -> None:
        self.load, self.rules, self.options = load, rules, options
        self.on_probe, self.eta = on_probe, eta
        self.send = agents.run if agents is not None else run  # from here, or through the agents
        self.interrupted = False

    def start(self, subject: Subject, repeat: int) -> None:
        subject.searches[repeat] = gen = search(subject.guess, self.options.search_rules())
        subject.rates[repeat] = next(gen)
        subject.probes[repeat] = 0

    def step(self, subject: Subject, repeat: int) -> bool:
        """One probe; True when that search has finished. An error inside it (not Ctrl-C)
        ends this search with the Config marked failed, saying so; the others go on."""
        try:
            return self._step(subject, repeat)
        except Exception as err:
            n = subject.probes.get(repeat, 0)
            subject.failed = (f"repeat {repeat}, probe {n}: {type(err).__name__}: {err}"
                              + (f"; {subject.failed}" if subject.failed else ""))
            self.on_probe(ProbeEvent(subject, repeat, n, subject.rates[repeat], "ERROR", subject.failed))
            self.eta.finish((subject.index, repeat))
            return True

    def _step(self, subject: Subject, repeat: int) -> bool:
        rate = subject.rates[repeat]
        n = subject.probes[repeat] = subject.probes[repeat] + 1
        rel = f"{PROBES_DIR}/{repeat}-{n}"
        self.on_probe(ProbeEvent(subject, repeat, n, rate))
        seed = self.options.seed * 1_000_003 + subject.index * 10_007 + repeat * 101 + n
        t0 = time.monotonic()
        probe = run_probe(self.load, subject.urls, rate, self.rules, subject.dir / rel, seed=seed,
                          config_record=subject.config.to_record(), server_identity=dict(subject.target.identity),
                          replicas=subject.target.replicas, send=self.send)
        subject.seconds += probe.seconds
        add_totals(subject.totals, probe.record["totals"])
        subject.status.timed("probing", t0)
        self.eta.probe((subject.index, repeat), time.monotonic() - t0)
        subject.log.write(subject.config.id, repeat, n, probe, rel)
        d = probe.outcome.decision
        if not probe.complete:
            self.interrupted = True
            return True
        if probe.outcome.valid:
            verdict, why = d.outcome + (" (marginal)" if d.marginal else ""), d.reason
        else:
            verdict, why = "INVALID, repeated", probe.outcome.reason
        self.on_probe(ProbeEvent(subject, repeat, n, rate, verdict, f"{why}; {probe.seconds:.0f} s"
                                 + (f"; {probe.imbalance}" if probe.imbalance else "")))
        lat = probe.record["latency_ms"]["corrected"]
        if probe.outcome.valid and d.outcome == "PASS" and (subject.best_pass is None
                                                            or rate > subject.best_pass["rate"]):
            subject.best_pass = {"rate": rate, "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"],
                                 "dir": rel}
        try:
            subject.rates[repeat] = subject.searches[repeat].send(probe.outcome)
            return False
        except StopIteration as stop:
            subject.found[repeat] = stop.value
            self.eta.finish((subject.index, repeat))
            return True


def finish_subject(subject: Subject, backend: Backend, *, slo: Slo, options: SearchOptions,
                   load: GeneratorOptions, complete: bool) -> Capacity:
    """Scrape, write run.json and status.json for a Config whose searches are over."""
    capacity = combine([subject.found[r] for r in sorted(subject.found)])
    if subject.target is not None and subject.before:
        after = subject.after or scrape.scrape_all(subject.read)
        subject.status.problems.extend(scrape.record(subject.dir / SERVER_METRICS_FILE,
                                                     [r.name for r in subject.read], subject.before, after))
    if subject.log.imbalanced:
        subject.status.problems.append(scrape.imbalanced_probes(subject.log.imbalanced))
    subject.status.problems.extend(backend.problems(subject.config))
    record = capacity_record(subject, capacity, slo=slo, options=options, load=load, complete=complete)
    write_json(subject.dir / RUN_FILE, record)
    subject.log.close()
    if not complete:
        subject.status.finish("interrupted", "stopped by Ctrl-C while probing", record["validity"]["valid"])
    elif subject.failed:
        subject.status.finish("failed", subject.failed, False)
    else:
        problems = "; ".join(subject.status.problems) or None
        subject.status.finish("done", problems, record["validity"]["valid"])
    return capacity


def interleave(pairs: list[tuple[Subject, int]], prober: Prober, rng: random.Random) -> None:
    """Every search in ``pairs`` to its end: each round, one probe of each unfinished search,
    in a seeded random order."""
    active = list(pairs)
    while active and not prober.interrupted:
        rng.shuffle(active)
        still = []
        for subject, repeat in active:
            if prober.interrupted:
                break
            if not prober.step(subject, repeat):
                still.append((subject, repeat))
        active = still


@dataclasses.dataclass(frozen=True)
class SearchSweep:
    """What the search method needs from the sweep."""

    out_dir: Path
    slo: Slo
    load: GeneratorOptions
    warmup: WarmupOptions
    search: SearchOptions
    force: bool = False
    agents: Generators | None = None  # in-cluster generator agents every run goes through


def run_search(configs: Sequence[Measured], backend: Backend, how: SearchSweep, body_for: Bodies,
               on_event: Callable[[Event], None], *, skip: Callable[[Path], bool]) -> tuple[list[ConfigOutcome], bool]:
    """Every Config's capacity; returns the outcomes (in Config order) and whether Ctrl-C stopped it."""
    total, so = len(configs), how.search
    outcomes: dict[str, ConfigOutcome] = {}
    subjects: list[Subject] = []
    for index, config in enumerate(configs, 1):
        config_dir = how.out_dir / config.id
        if not how.force and skip(config_dir):
            outcomes[config.id] = ConfigOutcome(config.id, config.name, "skipped")
            on_event(Event(index, total, config.name, "skipped", "already measured"))
            continue
        fresh_dir(config_dir)
        subjects.append(Subject(index, config, config_dir, Status(config_dir, config.id, config.name),
                                ProbeLog(config_dir)))
    eta = Eta(len(subjects) * so.repeats, so)

    def say(subject: Subject, phase: str, detail: str = "") -> None:
        on_event(Event(subject.index, total, subject.config.name, phase, detail, eta_s=eta.eta()))

    def on_probe(e: ProbeEvent) -> None:
        head = f"repeat {e.repeat} probe {e.probe} at {e.rate:.2f} req/s"
        say(e.subject, "probing", f"{head}: {e.verdict}, {e.detail}" if e.verdict else f"{head} ...")

    prober = Prober(how.load, so.probe_rules(how.slo), so, on_probe, eta, how.agents)
    rng = random.Random(so.seed)

    def ready(subject: Subject) -> bool:
        ok = prepare(subject, backend, body_for, how.warmup, so.saturation_s, how.load.timeout_s,
                     lambda phase, detail: say(subject, phase, detail), load=how.load, agents=how.agents)
        if not ok:
            say(subject, "failed", subject.failed or "")
            _teardown(backend, subject)
        return ok

    try:
        if backend.holds_many:
            up = [s for s in subjects if ready(s)]
            low = memory_note()
            if low:
                on_event(Event(0, total, "host", "warning", low))
            for s in up:
                for r in range(1, so.repeats + 1):
                    prober.start(s, r)
            interleave([(s, r) for s in up for r in range(1, so.repeats + 1)], prober, rng)
            if not prober.interrupted:
                common_rate.probe_pairs([s for s in up if not s.failed], _capacity_rps, how.load, prober.rules,
                                        seed=so.seed, say=lambda s, text: say(s, "comparing", text))
        else:
            for r in range(1, so.repeats + 1):
                for s in subjects if r % 2 else list(reversed(subjects)):
                    if prober.interrupted:
                        break
                    if s.failed or not ready(s):
                        continue
                    prober.start(s, r)
                    interleave([(s, r)], prober, rng)
                    _teardown(backend, s)
    except KeyboardInterrupt:
        prober.interrupted = True
    except Exception as err:
        for s in subjects:
            if len(s.found) < so.repeats and not s.failed:
                s.failed = f"the sweep stopped on {type(err).__name__}: {err}"
    finally:
        for s in subjects:
            t0 = time.monotonic()
            capacity = finish_subject(s, backend, slo=how.slo, options=so, load=how.load,
                                      complete=not prober.interrupted)
            _teardown(backend, s)
            s.status.timed("teardown", t0)
            state = s.status.state
            outcomes[s.config.id] = ConfigOutcome(s.config.id, s.config.name, state, s.status.data["error"],
                                                  s.status.data.get("valid"), tuple(s.status.problems))
            text = (f"capacity {capacity.rps:.2f} req/s (95% CI {capacity.lo:.2f}-{capacity.hi:.2f}), "
                    f"{sum(s.probes.values())} probes" if capacity.rps is not None else (s.failed or state))
            say(s, state, text)
    return [outcomes[c.id] for c in configs if c.id in outcomes], prober.interrupted


def _capacity_rps(subject: Subject) -> float | None:
    return combine([subject.found[r] for r in sorted(subject.found)]).rps if subject.found else None


def _teardown(backend: Backend, subject: Subject) -> None:
    if subject.before and not subject.after:  # the replicas' metrics, while they are still there
        subject.after = scrape.scrape_all(subject.read)
    try:
        backend.teardown(subject.config)
    except Exception as err:
        subject.status.problems.append(f"teardown: {err}")
        subject.status.save()


def memory_note(min_fraction: float = 0.1) -> str | None:
    """A warning when the machine's available memory is below ``min_fraction`` of its total
    (every Config's servers are up at once), else None."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        total = float(info["MemTotal"].split()[0])
        available = float(info["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError):
        return None
    if available >= min_fraction * total:
        return None
    return (f"only {available / 2**20:.1f} of {total / 2**20:.1f} GiB of memory is left with every Config's "
            "servers up: the servers may swap, which would show as latency")
