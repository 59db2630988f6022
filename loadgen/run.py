"""Library entry: ``run(options, out_dir, ...) -> RunResult`` (used by the CLI and the sweep)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from loadgen import hostcpu, recorder, schedule, timekeeping
from loadgen import payload as payload_mod
from loadgen import transport as transport_mod
from loadgen.engine import SEND_TIMINGS, Engine, EngineSettings
from loadgen.recorder import Interval
from loadgen.results import ResultsWriter
from loadgen.schedule import Profile

LOOPS = ("uvloop", "asyncio")
START_LEAD_S = 0.2  # time between choosing the schedule's origin and its first arrival
PREWARM_RPS = 1000.0  # see prewarm_connections


class OptionsError(ValueError):
    """Options that cannot run (message says why)."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything one measurement needs; echoed into run.json."""

    targets: tuple[str, ...]
    profile: Profile
    payload: str = "tensor"  # tensor | b64 | file:PATH
    max_in_flight: int = 256
    timeout_s: float = 30.0
    workers: int = 1
    max_send_lag_ms: float | None = None  # None: results.send_lag_bound's rule
    slo_latency_ms: float | None = None  # the latency bound the run is judged against, if any
    transport: str = "auto"  # auto | fast | aiohttp (transport.choose)
    loop: str = "uvloop"
    warmup_s: float = 0.0
    send_timing: str = "auto"  # auto | precise | spin | sleep (engine.SEND_TIMINGS)
    priority: str = "auto"  # the sending thread's scheduling class (timekeeping.PRIORITIES)

    def __post_init__(self) -> None:
        if isinstance(self.targets, (list, str)):
            object.__setattr__(self, "targets", tuple([self.targets] if isinstance(
                self.targets, str) else self.targets))
        if not self.targets:
            raise OptionsError("at least one --target URL is needed")
        for url in self.targets:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise OptionsError(f"bad target {url!r}: expected http://HOST:PORT/PATH "
                                   "(or https://)")
        if self.max_in_flight < 1:
            raise OptionsError("--max-in-flight must be >= 1")
        if not (0 < self.timeout_s <= 60.0):
            raise OptionsError("--timeout must be > 0 and <= 60 s (the histogram's range)")
        if self.workers < 1:
            raise OptionsError("--workers must be >= 1")
        if self.max_send_lag_ms is not None and not (
                self.max_send_lag_ms > 0 and math.isfinite(self.max_send_lag_ms)):
            raise OptionsError("--max-send-lag must be > 0")
        if self.slo_latency_ms is not None and not (
                self.slo_latency_ms > 0 and math.isfinite(self.slo_latency_ms)):
            raise OptionsError("the SLO's latency bound must be > 0")
        if self.priority not in timekeeping.PRIORITIES:
            raise OptionsError(f"unknown priority {self.priority!r}: use one of "
                               f"{', '.join(timekeeping.PRIORITIES)}")
        if self.transport not in transport_mod.TRANSPORTS:
            raise OptionsError(f"unknown transport {self.transport!r}: use one of "
                               f"{', '.join(transport_mod.TRANSPORTS)}")
        if self.send_timing not in SEND_TIMINGS:
            raise OptionsError(f"unknown send timing {self.send_timing!r}: use one of "
                               f"{', '.join(SEND_TIMINGS)}")
        if self.loop not in LOOPS:
            raise OptionsError(f"unknown loop {self.loop!r}: use uvloop or asyncio")
        if not (0 <= self.warmup_s < self.profile.duration_s):
            raise OptionsError("--warmup must be >= 0 and shorter than the duration")

    def record(self) -> dict:
        """The "options" object of run.json, but for the transport (run() adds the one chosen)."""
        return {"max_in_flight": self.max_in_flight, "timeout_s": self.timeout_s,
                "workers": self.workers, "max_send_lag_ms": self.max_send_lag_ms,
                "slo_latency_ms": self.slo_latency_ms, "send_timing": self.send_timing,
                "priority": self.priority}


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


@dataclasses.dataclass(frozen=True)
class RunResult:
    out_dir: str
    record: dict  # run.json as written

    @property
    def valid(self) -> bool:
        return bool(self.record["validity"]["valid"])

    @property
    def complete(self) -> bool:
        return bool(self.record["complete"])


class _Aggregator:
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


def default_server_identity() -> dict:
    return {"kind": "external", "version": None, "argv": [], "image_digest": None}


def run(options: RunOptions, out_dir: str, *, config_record: dict | None = None,
        server_identity: dict | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        choice: transport_mod.Choice | None = None) -> RunResult:
    """Measure one target with ``options``; write results into ``out_dir``.

    Ctrl-C (SIGINT) or SIGTERM during the run ends it cleanly: the files are complete
    and run.json says ``"complete": false``. Raises OptionsError / PayloadError for bad
    input before anything is sent. ``choice``: ``choose_transport(options)``, if the caller
    has it already.
    """
    choice = choice or choose_transport(options)
    body = payload_mod.load(options.payload)
    header = {"config": config_record, "server": server_identity or default_server_identity(),
              "profile": options.profile.to_dict(), "payload": body.record(),
              "targets": list(options.targets), "options": options.record() | choice.record()}
    if options.workers > 1:
        from loadgen import workers

        return workers.run_workers(options, choice, body, out_dir, header, _Aggregator, on_progress)
    return _run_inprocess(options, choice, body, out_dir, header, on_progress)


def choose_transport(options: RunOptions) -> transport_mod.Choice:
    """The transport ``options`` resolve to (``auto``: fast unless TLS or a proxy needs aiohttp)."""
    try:
        return transport_mod.choose(options.transport, options.targets)
    except transport_mod.TransportError as e:
        raise OptionsError(str(e)) from None


def prewarm_connections(options: RunOptions) -> int:
    """Connections per target a worker opens before the run: one per PREWARM_RPS of the
    first second's rate (a run that starts at 60k req/s would otherwise spend its first
    tens of ms connecting, behind its schedule), within the in-flight ceiling."""
    first_second = schedule.expected_arrivals(options.profile, 0.0, 1.0)
    per_target = first_second / options.workers / len(options.targets)
    return min(math.ceil(per_target / PREWARM_RPS), options.max_in_flight // len(options.targets))


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def make_engine(options: RunOptions, choice: transport_mod.Choice, body: payload_mod.Payload, sink, *,
                worker_index: int = 0) -> Engine:
    transport = transport_mod.make(
        choice, urls=options.targets, body=body.body,
        content_type=body.content_type, max_in_flight=options.max_in_flight,
        timeout_s=options.timeout_s, prewarm=prewarm_connections(options))
    settings = EngineSettings(max_in_flight=options.max_in_flight,
                              n_targets=len(options.targets), worker_index=worker_index,
                              workers=options.workers, send_timing=options.send_timing,
                              priority=options.priority)
    return Engine(options.profile, transport, settings, sink)


def _run_inprocess(options, choice, body, out_dir, header, on_progress) -> RunResult:
    box: dict = {}
    engine = make_engine(options, choice, body, lambda iv: box["agg"].add(iv))

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
        try:
            await engine.open()
            box["cpu"] = hostcpu.snapshot()
            t0 = time.monotonic() + START_LEAD_S
            started = time.time() + START_LEAD_S
            writer = ResultsWriter(out_dir, header, started)
            box["writer"] = writer
            box["agg"] = _Aggregator(writer, options.profile, on_progress)
            stats = await engine.run(t0, stop)
            return stats, started
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=lambda: new_loop(options.loop)) as runner:
        stats, started = runner.run(main())
    cpu = hostcpu.usage(box["cpu"], hostcpu.snapshot())
    record = box["writer"].finish(
        ended_at_epoch=started + stats.elapsed_s, elapsed_s=stats.elapsed_s,
        complete=not stats.stopped_early, max_send_lag_ms=options.max_send_lag_ms,
        slo_latency_ms=options.slo_latency_ms, warmup_s=options.warmup_s,
        scheduler=stats.scheduler, host_cpu=cpu.record() if cpu else None)
    return RunResult(out_dir, record)
