"""Starting a run's engine, the same in every process (in-process or a worker): its event
loop, its transport and engine built from the options, and the lead before the schedule's origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import signal
import threading

from loadgen import hostcpu, schedule, transports
from loadgen import payload as payload_mod
from loadgen.engine import Engine, EngineSettings
from loadgen.options import RunOptions
from loadgen.results import ResultsWriter

# time between choosing the schedule's origin (after connecting) and its first arrival:
# long enough for every worker process to wake on "go" and start its loop
START_LEAD_S = 0.3
PREWARM_RPS = 1000.0  # see prewarm_connections


@contextlib.contextmanager
def frozen_heap():
    """During a run, the garbage collector does not walk what existed before it.

    A full collection walks every live object: in a process holding pytest, numpy, pandas
    or a sweep's records that took 15-33 ms on this machine, and a send due meanwhile went
    that late (a 1 s run at 200 req/s then had a send lag p99 of 17.6 ms). Collecting once
    before the run and freezing the survivors leaves the collector only the run's own
    short-lived objects; they are unfrozen after it.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def prewarm_connections(options: RunOptions) -> int:
    """Connections per target a worker opens before the run: one per PREWARM_RPS of the
    first second's rate (a run that starts at 60k req/s would otherwise spend its first
    tens of ms connecting, behind its schedule), within the in-flight ceiling."""
    first_second = schedule.expected_arrivals(options.profile, 0.0, 1.0)
    per_target = first_second / options.workers / len(options.targets)
    return min(math.ceil(per_target / PREWARM_RPS), options.max_in_flight // len(options.targets))


def finish(writer: ResultsWriter, options: RunOptions, *, started: float, elapsed_s: float,
           complete: bool, scheduler: dict | None, cpu: hostcpu.Usage | None,
           extra_reasons: list[str] | tuple[str, ...] = (), ended_s: float | None = None,
           generators: dict | None = None) -> dict:
    """The run's last step, the same in every process layout: run.json, judged by
    ``options``' rules, with how sends were timed and who used the CPUs (``generators``:
    the agents that shared it, when it ran on agents)."""
    return writer.finish(ended_at_epoch=started + elapsed_s, elapsed_s=elapsed_s, complete=complete,
                         max_send_lag_ms=options.max_send_lag_ms,
                         slo_latency_ms=options.slo_latency_ms, warmup_s=options.warmup_s,
                         extra_reasons=extra_reasons, scheduler=scheduler, ended_s=ended_s,
                         host_cpu=cpu.record() if cpu else None, generators=generators)


@contextlib.contextmanager
def stop_signals(handler):
    """Ctrl-C and SIGTERM call ``handler(signum, frame)`` while the block runs (a run that
    blocks this thread: worker processes, agents); the old handlers come back after. Off
    the main thread, where Python allows no handlers, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def make_engine(options: RunOptions, choice: transports.Choice, body: payload_mod.Payload, sink, *,
                worker_index: int = 0) -> Engine:
    transport = transports.make(
        choice, urls=options.targets, body=body.body,
        content_type=body.content_type, max_in_flight=options.max_in_flight,
        timeout_s=options.timeout_s, prewarm=prewarm_connections(options),
        channels=options.connections)
    settings = EngineSettings(max_in_flight=options.max_in_flight,
                              n_targets=len(options.targets), worker_index=worker_index,
                              workers=options.workers, send_timing=options.send_timing,
                              priority=options.priority)
    return Engine(options.profile, transport, settings, sink)
