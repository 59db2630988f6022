"""The sweep: for each Config, deploy -> warm up -> measure -> tear down; then the report.

Two methods (``SweepOptions.method``): ``search`` (the default, ``sweep.capacity``: each
Config's capacity from constant-rate probes, interleaved across Configs) and ``ramp``
(the seed study's: one run of the spec's load profile per Config, this module's loop).

One plain loop (STYLE.md 8). Results are keyed by Config id under ``out_dir``; a
Config whose run finished is skipped on the next run unless ``force``. A Config that
fails to deploy, or whose servers die, is recorded with its error and the sweep goes
on. Ctrl-C stops after writing what was measured.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deploy.spec import Config, Sweep
from deploy.target import Backend, DeployError, Target
from formats.agent import AgentCallError
from formats.results import METHODS, SERVER_METRICS_FILE, SWEEP_FILE, SWEEP_SCHEMA, TOOL
from loadgen.options import GeneratorOptions
from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from sweep import provenance, scrape
from sweep.agents import Generators
from sweep.capacity import Bodies, SearchSweep, bodies, run_search
from sweep.events import ConfigOutcome, Event, SweepOutcome
from sweep.plan import SearchOptions
from sweep.status import Status, fresh_dir, is_complete, write_json
from sweep.warmup import WarmupOptions, warm_and_record


class SweepError(RuntimeError):
    """The sweep cannot start (message says why)."""


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    out_dir: Path
    load: GeneratorOptions = dataclasses.field(default_factory=GeneratorOptions)  # flags > spec load: > defaults
    force: bool = False
    warmup: WarmupOptions = dataclasses.field(default_factory=WarmupOptions)
    lock_path: Path | None = None
    repo: Path | None = None
    method: str = "search"  # formats.results.METHODS: the capacity search, or the seed's ramp
    search: SearchOptions = dataclasses.field(default_factory=SearchOptions)
    given_up: tuple[str, ...] = ()  # what --budget gave up (recorded in sweep.json)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SweepError(f"method {self.method!r}: use one of {', '.join(METHODS)}")


def profile_from(spec: Mapping[str, Any]) -> Profile:
    """A Config's load-profile dict (deploy's spec) as loadgen's Profile."""
    steps = spec.get("steps")
    return Profile(
        kind=spec["kind"], duration_s=float(spec["duration_s"]), arrivals=spec.get("arrivals", "uniform"),
        seed=int(spec.get("seed") or 0), rate=spec.get("rate"), users=spec.get("users"),
        spawn_rate=spec.get("spawn_rate"), per_user_rps=spec.get("per_user_rps"),
        steps=tuple((float(r), float(d)) for r, d in steps) if steps else None,
    )


def sweep_record(sweep: Sweep, options: SweepOptions, agents: Generators | None = None) -> dict:
    """sweep.json: everything needed to repeat the sweep exactly."""
    return {
        "schema": SWEEP_SCHEMA,
        "sweep_id": sweep.id,
        "name": sweep.name,
        "backend": sweep.backend,
        "spec": sweep.spec,
        "source": sweep.source,
        "slo": sweep.slo.to_dict(),
        "configs": [c.to_record() for c in sweep.configs],
        "image_note": sweep.image_note,
        "load": options.load.to_mapping(),
        "method": options.method,
        "search": options.search.record() if options.method == "search" else None,
        "budget_gave_up": list(options.given_up),
        "generators": agents.record() if agents is not None else None,
        "tool": dict(TOOL),
        "lock_sha256": provenance.file_sha256(options.lock_path) if options.lock_path else None,
        "git": provenance.git_commit(options.repo),
        "host": provenance.host_facts(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class _Eta:
    """Sweep ETA from the measured cost of finished Configs (an estimate before any)."""

    def __init__(self, configs: tuple[Config, ...], warmup: WarmupOptions) -> None:
        self.remaining = {c.id: float(c.profile["duration_s"]) for c in configs}
        self.default_overhead_s = 30.0 + warmup.max_seconds / 3
        self.measured: list[float] = []  # seconds spent outside the load phase, per Config

    def overhead(self) -> float:
        return sum(self.measured) / len(self.measured) if self.measured else self.default_overhead_s

    def finish(self, config_id: str, seconds: float, measured: bool) -> None:
        duration = self.remaining.pop(config_id, 0.0)
        if measured:
            self.measured.append(max(0.0, seconds - duration))

    def eta(self, current_id: str | None = None, load_left_s: float | None = None) -> float:
        """Seconds left: the rest of the current Config's load (if loading), then the others."""
        total = sum(d + self.overhead() for d in self.remaining.values())
        if current_id is not None and load_left_s is not None:
            total -= self.remaining.get(current_id, 0.0) + self.overhead() / 2 - load_left_s
        return max(0.0, total)


def reach_every_replica(load: GeneratorOptions, configs: tuple[Config, ...]) -> GeneratorOptions:
    """``load`` with at least one gRPC channel per replica behind one address: a Service
    balances per connection, so fewer channels than replicas would leave replicas idle.
    (Local replicas are each their own target and get ``connections`` channels each.)"""
    needed = max((c.replicas for c in configs if c.protocol == "grpc" and c.backend != "local"), default=0)
    return dataclasses.replace(load, connections=needed) if needed > load.connections else load


def run_sweep(sweep: Sweep, backend: Backend, options: SweepOptions,
              on_event: Callable[[Event], None] = lambda e: None, agents: Generators | None = None) -> SweepOutcome:
    """Measure every Config of ``sweep`` with ``backend``; results under ``options.out_dir``.
    ``agents``: in-cluster generator agents that send every run's load (``sweep.agents``)."""
    started = time.monotonic()
    body_for = bodies(options.load.payload)
    for config in sweep.configs:  # bad payloads fail before anything is deployed
        body_for(config.protocol, config.serving.model_name)
    options = dataclasses.replace(options, load=reach_every_replica(options.load, sweep.configs))
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    existing = out / SWEEP_FILE
    if existing.is_file():
        try:
            recorded = json.loads(existing.read_text()).get("sweep_id")
        except ValueError:
            recorded = None
        if recorded != sweep.id:
            raise SweepError(f"{out} holds another sweep ({recorded}); use a new --out")
    write_json(existing, sweep_record(sweep, options, agents))
    if options.method == "search":
        how = SearchSweep(out_dir=out, slo=sweep.slo, load=options.load, warmup=options.warmup,
                          search=options.search, force=options.force, agents=agents)
        outcomes, interrupted = run_search(sweep.configs, backend, how, body_for, on_event, skip=is_complete)
        return SweepOutcome(out, tuple(outcomes), interrupted, time.monotonic() - started)

    eta = _Eta(sweep.configs, options.warmup)
    outcomes: list[ConfigOutcome] = []
    interrupted = False
    total = len(sweep.configs)
    for index, config in enumerate(sweep.configs, 1):
        config_dir = out / config.id
        if not options.force and is_complete(config_dir):
            eta.finish(config.id, 0.0, measured=False)
            outcomes.append(ConfigOutcome(config.id, config.name, "skipped"))
            on_event(Event(index, total, config.name, "skipped", "already measured", eta_s=eta.eta()))
            continue
        t0 = time.monotonic()
        try:
            outcome = _measure(config, backend, body_for, options, config_dir, sweep.slo.p99_ms, agents,
                               lambda phase, detail="", progress=None, left=None, i=index, c=config: on_event(
                                   Event(i, total, c.name, phase, detail, progress, eta.eta(c.id, left))))
        except KeyboardInterrupt:
            outcome = ConfigOutcome(config.id, config.name, "interrupted", "stopped by Ctrl-C")
        seconds = time.monotonic() - t0
        outcome = dataclasses.replace(outcome, seconds=seconds)
        outcomes.append(outcome)
        eta.finish(config.id, seconds, measured=outcome.status == "done")
        on_event(Event(index, total, config.name, outcome.status, outcome.error or "", eta_s=eta.eta()))
        if outcome.status == "interrupted":
            interrupted = True
            break
    return SweepOutcome(out, tuple(outcomes), interrupted, time.monotonic() - started)


def _measure(config: Config, backend: Backend, body_for: Bodies, options: SweepOptions,
             config_dir: Path, slo_ms: float, agents: Generators | None, phase: Callable[..., None]) -> ConfigOutcome:
    fresh_dir(config_dir)
    status = Status(config_dir, config.id, config.name)

    def finish(state: str, error: str | None = None, valid: bool | None = None) -> ConfigOutcome:
        status.finish(state, error, valid)
        return ConfigOutcome(config.id, config.name, state, error, valid, tuple(status.problems))

    timed = status.timed
    t0 = time.monotonic()
    phase("deploying")
    try:
        target = backend.deploy(config)
    except KeyboardInterrupt:
        _teardown(backend, status)
        return finish("interrupted", "stopped by Ctrl-C while deploying")
    except Exception as err:
        _teardown(backend, status)
        return finish("failed", f"deploy failed: {err}")
    timed("deploy", t0)
    try:
        return _warm_and_load(config, backend, body_for, options, config_dir, slo_ms, target, status, phase,
                              timed, finish, agents)
    finally:
        t0 = time.monotonic()
        phase("tearing down")
        _teardown(backend, status)
        timed("teardown", t0)


def _warm_and_load(config: Config, backend: Backend, body_for: Bodies, options: SweepOptions,
                   config_dir: Path, slo_ms: float, target: Target, status: Status,
                   phase: Callable[..., None], timed: Callable[[str, float], None],
                   finish: Callable[..., ConfigOutcome], agents: Generators | None) -> ConfigOutcome:
    t0 = time.monotonic()
    phase("warming up")
    try:
        urls = target.load_urls(config.protocol)
        replicas = target.replicas()
        if agents is None:
            _, failed = warm_and_record(urls, body_for(config.protocol, target.model_name), options.warmup,
                                        timeout_s=options.load.timeout_s, config_dir=config_dir)
        else:
            agents.wait_resolved(urls, len(replicas))
            _, failed = agents.warm_and_record(urls, options.load, options.warmup, replicas=len(replicas),
                                               config_dir=config_dir)
    except (DeployError, AgentCallError) as err:
        return finish("failed", str(err))
    timed("warmup", t0)
    if failed:
        return finish("failed", failed)

    before = scrape.scrape_all(replicas)
    t0 = time.monotonic()
    profile = profile_from(config.profile)
    phase("loading", f"{profile.kind} {profile.duration_s:.0f} s")
    run_options = RunOptions.of(options.load, targets=urls, profile=profile,
                                slo_latency_ms=slo_ms)
    try:
        result = (agents.run if agents is not None else run)(
            run_options, str(config_dir), config_record=config.to_record(), server_identity=dict(target.identity),
            on_progress=lambda p: phase("loading", "", p, max(0.0, p.duration_s - p.t_s)))
    except AgentCallError as err:
        return finish("failed", str(err))
    timed("load", t0)
    after = scrape.scrape_all(replicas)
    status.problems.extend(scrape.record(config_dir / SERVER_METRICS_FILE, [r.name for r in replicas], before, after))
    status.problems.extend(backend.problems(config))
    if result.interrupted:
        return finish("interrupted", "stopped by Ctrl-C while loading", result.valid)
    if status.problems:
        return finish("done", "; ".join(status.problems), result.valid)
    return finish("done", None, result.valid)


def _teardown(backend: Backend, status: Status, config: Config | None = None) -> None:
    try:
        backend.teardown(config)
    except Exception as err:
        status.problems.append(f"teardown: {err}")
        status.save()
