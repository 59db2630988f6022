"""Library entry: ``run(options, out_dir, ...) -> RunResult`` (used by the CLI and the sweep).

One worker runs in this process; more run in worker processes (``workers``), or the
arrivals are shared by generator agents (``agents``: ``loadgen.remote``). The options
(``options``), the engine's setup (``launch``) and the per-second aggregation (``aggregate``)
live in their own modules; the names callers use are re-exported here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Sequence

from loadgen import hostcpu, remote, transports, workers
from loadgen import payload as payload_mod
from loadgen.aggregate import Aggregator, Progress, Until
from loadgen.launch import START_LEAD_S, finish, frozen_heap, make_engine, new_loop
from loadgen.options import LOOPS, OptionsError, RunOptions, choose_transport
from loadgen.recorder import Interval
from loadgen.results import ResultsWriter

__all__ = ["LOOPS", "OptionsError", "Progress", "RunOptions", "RunResult", "Until",
           "choose_transport", "default_server_identity", "run"]


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

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C or SIGTERM. A run through agents may also be incomplete because
        one failed (then it is invalid, and not interrupted)."""
        generators = self.record.get("generators") or {}
        return bool(generators["interrupted"]) if "interrupted" in generators else not self.complete


def default_server_identity() -> dict:
    return {"kind": "external", "version": None, "argv": [], "image_digest": None}


def run(options: RunOptions, out_dir: str, *, config_record: dict | None = None,
        server_identity: dict | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        choice: transports.Choice | None = None, until: Until | None = None,
        agents: Sequence[remote.AgentLink] | None = None) -> RunResult:
    """Measure one target with ``options``; write results into ``out_dir``.

    Ctrl-C (SIGINT) or SIGTERM during the run ends it cleanly: the files are complete
    and run.json says ``"complete": false``. Raises OptionsError / PayloadError for bad
    input before anything is sent. ``choice``: ``choose_transport(options)``, if the caller
    has it already. ``until``: shown each second (merged across workers, already written);
    when it returns True the schedule is cut there, the requests in flight are waited for,
    and run.json says ``"ended_by": "rule"`` with the schedule's window that ran.
    ``agents``: generator agents that share the arrivals (``options.workers`` is then
    their count; each agent chooses its own transport); run.json's ``generators`` says
    which, and how well their clocks agreed.
    """
    choice = choice or choose_transport(options)
    body = payload_mod.load(options.payload, protocol=options.protocol, model=options.grpc_model)
    header = {"config": config_record, "server": server_identity or default_server_identity(),
              "profile": options.profile.to_dict(), "payload": body.record(),
              "targets": list(options.targets), "options": options.record() | choice.record()}
    if agents:
        record = remote.run_remote(options, agents, body, out_dir, header, on_progress, until)
    elif options.workers > 1:
        record = workers.run_workers(options, choice, body, out_dir, header, on_progress, until)
    else:
        record = _run_inprocess(options, choice, body, out_dir, header, on_progress, until)
    return RunResult(out_dir, record)


def _run_inprocess(options, choice, body, out_dir, header, on_progress, until) -> dict:
    """One engine in this process; returns run.json's record."""
    aggregator: Aggregator | None = None  # made once the schedule's origin is chosen

    def sink(interval: Interval) -> None:
        aggregator.add(interval)

    engine = make_engine(options, choice, body, sink)

    async def main():
        nonlocal aggregator
        loop = asyncio.get_running_loop()
        stop, end = asyncio.Event(), asyncio.Event()
        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
        try:
            await engine.open()
            writer = ResultsWriter(out_dir, header)  # before the origin: it syncs to disk
            cpu_before = hostcpu.snapshot()
            t0 = time.monotonic() + START_LEAD_S
            started = time.time() + START_LEAD_S
            writer.start(started)
            aggregator = Aggregator(writer, options.profile, on_progress, until, end.set)
            stats = await engine.run(t0, stop, end)
            return stats, started, writer, cpu_before
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    with asyncio.Runner(loop_factory=lambda: new_loop(options.loop)) as runner, frozen_heap():
        stats, started, writer, cpu_before = runner.run(main())
    return finish(writer, options, started=started, elapsed_s=stats.elapsed_s,
                  complete=not stats.stopped_early, ended_s=stats.ended_s, scheduler=stats.scheduler,
                  cpu=hostcpu.usage(cpu_before, hostcpu.snapshot()))
