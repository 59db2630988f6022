"""The search method of a sweep: every Config's capacity, its probes interleaved.

For each Config: deploy, warm up, a closed-loop saturation step for the first guess,
then ``repeats`` independent searches (``sweep.search``), and one more search at a time
(up to ``max_repeats``) while the Config's 95% interval is wider than ``precision`` on
either side: measurement goes where the answer is still loose. The capacity pools every
probe of the Config (``sweep.estimate``). When the backend holds many
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
from sweep import common_rate, estimate, scrape
from sweep.agents import Generators
from sweep.bringup import prepare
from sweep.estimate import Capacity
from sweep.events import ConfigOutcome, Event
from sweep.plan import Eta, SearchOptions
from sweep.probe import ProbeRules
from sweep.prober import ProbeLog, run_probe
from sweep.search import Found, Outcome, search
from sweep.status import Status, fresh_dir, now_utc, write_json
from sweep.warmup import WarmupOptions


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
    outcomes: list[Outcome] = dataclasses.field(default_factory=list)  # every probe the searches ran
    settled: bool = False  # no further search (precise enough, at most_repeats, or out of budget)
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


def capacity_record(subject: Subject, cap: Capacity, *, slo: Slo, options: SearchOptions,
                    load: GeneratorOptions, complete: bool, generators: dict | None = None) -> dict:
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
        "capacity": cap.to_record(),
        "searches": [{"repeat": r, "capacity": f.capacity, "lo": f.lo, "hi": None if math.isinf(f.hi) else f.hi,
                      "ci_lo": f.ci_lo, "ci_hi": None if math.isinf(f.ci_hi) else f.ci_hi, "probes": f.probes,
                      "converged": f.converged, "error": f.error} for r, f in sorted(subject.found.items())],
        "probes": sum(subject.probes.values()),
        "best_pass": subject.best_pass,
        "common_probe": subject.common_probe,
        "generators": generators,  # the in-cluster agents every probe went through (image by digest), or None
        "started_at": subject.started, "ended_at": now_utc(), "duration_s": round(subject.seconds, 3),
        "complete": complete,
        "totals": subject.totals or {"scheduled": 0, "sent": 0, "ok": 0, "errors": 0, "error_classes": {}},
        "validity": {"valid": cap.rps is not None and not reasons, "reasons": reasons},
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
        self.spent_s = 0.0  # wall seconds spent probing, drains included

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
        self.spent_s += time.monotonic() - t0
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
        subject.outcomes.append(probe.outcome)
        try:
            subject.rates[repeat] = subject.searches[repeat].send(probe.outcome)
            return False
        except StopIteration as stop:
            subject.found[repeat] = stop.value
            self.eta.finish((subject.index, repeat))
            return True


def finish_subject(subject: Subject, backend: Backend, *, slo: Slo, options: SearchOptions,
                   load: GeneratorOptions, complete: bool, generators: dict | None = None) -> Capacity:
    """Scrape, write run.json and status.json for a Config whose searches are over."""
    cap = subject_capacity(subject, options.probe_rules(slo))
    if subject.target is not None and subject.before:
        after = subject.after or scrape.scrape_all(subject.read)
        subject.status.problems.extend(scrape.record(subject.dir / SERVER_METRICS_FILE,
                                                     [r.name for r in subject.read], subject.before, after))
    if subject.log.imbalanced:
        subject.status.problems.append(scrape.imbalanced_probes(subject.log.imbalanced))
    subject.status.problems.extend(backend.problems(subject.config))
    record = capacity_record(subject, cap, slo=slo, options=options, load=load, complete=complete,
                             generators=generators)
    write_json(subject.dir / RUN_FILE, record)
    subject.log.close()
    if not complete:
        subject.status.finish("interrupted", "stopped by Ctrl-C while probing", record["validity"]["valid"])
    elif subject.failed:
        subject.status.finish("failed", subject.failed, False)
    else:
        problems = "; ".join(subject.status.problems) or None
        subject.status.finish("done", problems, record["validity"]["valid"])
    return cap


def subject_capacity(subject: Subject, rules: ProbeRules) -> Capacity:
    """The Config's capacity so far: every search it finished, every probe they ran."""
    return estimate.capacity([subject.found[r] for r in sorted(subject.found)], subject.outcomes, p=rules.p,
                             confidence=rules.confidence, bound_s=rules.latency_ms / 1000.0)


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
    eta = Eta(len(subjects) * so.most_repeats, so)

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

    def announce(pairs: list[tuple[Subject, int]]) -> None:
        for subject, repeat in pairs:
            if repeat > so.repeats:
                cap = subject_capacity(subject, prober.rules)
                say(subject, "probing", f"search {repeat} of up to {so.most_repeats}: the 95% CI is "
                                        f"+-{cap.half_width:.0%}, wider than --precision {so.precision:.0%}")

    try:
        if backend.holds_many:
            up = [s for s in subjects if ready(s)]
            low = memory_note()
            if low:
                on_event(Event(0, total, "host", "warning", low))
            while not prober.interrupted:
                pairs = next_round(up, so, prober.rules, prober.spent_s, eta)
                if not pairs:
                    break
                announce(pairs)
                for s, r in pairs:
                    prober.start(s, r)
                interleave(pairs, prober, rng)
            if not prober.interrupted:
                common_rate.probe_pairs([s for s in up if not s.failed], _capacity_rps(prober.rules), how.load,
                                        prober.rules, seed=so.seed, say=lambda s, text: say(s, "comparing", text))
        else:
            flip = False
            while not prober.interrupted:
                pairs = next_round([s for s in subjects if not s.failed], so, prober.rules, prober.spent_s,
                                   eta)
                if not pairs:
                    break
                announce(pairs)
                for s, r in pairs if not flip else list(reversed(pairs)):
                    if prober.interrupted:
                        break
                    if s.failed or not ready(s):
                        continue
                    prober.start(s, r)
                    interleave([(s, r)], prober, rng)
                    _teardown(backend, s)
                flip = not flip
    except KeyboardInterrupt:
        prober.interrupted = True
    except Exception as err:
        for s in subjects:
            if len(s.found) < so.repeats and not s.failed:
                s.failed = f"the sweep stopped on {type(err).__name__}: {err}"
    finally:
        generators = how.agents.record() if how.agents is not None else None
        for s in subjects:
            t0 = time.monotonic()
            capacity = finish_subject(s, backend, slo=how.slo, options=so, load=how.load,
                                      complete=not prober.interrupted, generators=generators)
            _teardown(backend, s)
            s.status.timed("teardown", t0)
            state = s.status.state
            outcomes[s.config.id] = ConfigOutcome(s.config.id, s.config.name, state, s.status.data["error"],
                                                  s.status.data.get("valid"), tuple(s.status.problems))
            text = (f"capacity {capacity.rps:.2f} req/s (95% CI {capacity.lo:.2f}-{capacity.hi:.2f}), "
                    f"{sum(s.probes.values())} probes" if capacity.rps is not None else (s.failed or state))
            say(s, state, text)
    return [outcomes[c.id] for c in configs if c.id in outcomes], prober.interrupted


def next_round(subjects: Sequence[Subject], options: SearchOptions, rules: ProbeRules, spent_s: float,
               eta: Eta) -> list[tuple[Subject, int]]:
    """The next searches to run: every Config's first ``repeats``, then one more for each
    Config whose capacity is still looser than ``precision`` (``SearchOptions.wants_more``),
    none once the probing has taken ``budget_s``. A Config that gets no more is taken off
    the ETA."""
    pairs = []
    over_budget = options.budget_s is not None and spent_s >= options.budget_s
    for s in subjects:
        done = len(s.searches)
        if s.failed or s.settled:
            continue
        if done < options.repeats:
            pairs.extend((s, r) for r in range(done + 1, options.repeats + 1))
        elif not over_budget and options.wants_more(subject_capacity(s, rules), done):
            pairs.append((s, done + 1))
        else:
            s.settled = True
            eta.drop(options.most_repeats - done)
    return pairs


def _capacity_rps(rules: ProbeRules) -> Callable[[Subject], float | None]:
    def rps(subject: Subject) -> float | None:
        return subject_capacity(subject, rules).rps if subject.found else None
    return rps


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
