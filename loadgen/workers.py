"""Several worker processes, one engine each, merged into one result.

Worker ``i`` of ``N`` takes every N-th arrival (global index ``i mod N``), so the
union is exactly the schedule. Each second a worker sends its interval (histograms
encoded) to the parent, which merges the N intervals of a second losslessly and
writes them. The parent owns Ctrl-C: workers ignore SIGINT and stop on an event.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue as queue_mod
import signal
import time

from loadgen import hostcpu
from loadgen.aggregate import Aggregator, Merger
from loadgen.engine import merge_scheduler
from loadgen.launch import START_LEAD_S, finish, frozen_heap, make_engine, new_loop, stop_signals
from loadgen.recorder import Interval
from loadgen.results import ResultsWriter

READY_TIMEOUT_S = 60.0


def worker_main(options, choice, body, index, q, go, t0_value, stop_flag, end_flag) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = make_engine(options, choice, body, lambda iv: q.put(
            ("interval", index, iv.to_wire())), worker_index=index)
        async def main():
            stop, end = asyncio.Event(), asyncio.Event()

            async def watch():
                parent = mp.parent_process()
                while not stop_flag.is_set() and not end_flag.is_set():
                    if parent is not None and not parent.is_alive():  # nobody to report to
                        stop_flag.set()
                        break
                    await asyncio.sleep(0.05)
                (stop if stop_flag.is_set() else end).set()

            watcher = asyncio.get_running_loop().create_task(watch())
            try:
                return await engine.run(t0_value.value, stop, end)
            finally:
                watcher.cancel()

        with asyncio.Runner(loop_factory=lambda: new_loop(options.loop)) as runner:
            runner.run(engine.open())  # connections first: the schedule's origin comes after
            with frozen_heap():  # collected before "ready": the origin is chosen after
                q.put(("ready", index, None))
                go.wait()
                if stop_flag.is_set():  # stopped before the origin was given: t0 is not set
                    q.put(("failed", index, "stopped before the start"))
                    return
                cpu0 = hostcpu.self_cpu_s()
                stats = runner.run(main())
        q.put(("done", index, {"elapsed_s": stats.elapsed_s,
                               "stopped_early": stats.stopped_early,
                               "ended_s": stats.ended_s,
                               "scheduler": stats.scheduler,
                               "cpu_s": hostcpu.self_cpu_s() - cpu0}))
    except BaseException as e:  # report, never hang the parent
        q.put(("failed", index, f"{type(e).__name__}: {e}"))


def run_workers(options, choice, body, out_dir, header, on_progress, until=None) -> dict:
    """``options.workers`` engines in worker processes; returns run.json's record."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    go, stop_flag, end_flag = ctx.Event(), ctx.Event(), ctx.Event()
    t0_value = ctx.Value("d", 0.0)
    n = options.workers
    procs = [ctx.Process(target=worker_main, name=f"loadgen-worker-{i}", daemon=True,
                         args=(options, choice, body, i, q, go, t0_value, stop_flag, end_flag))
             for i in range(n)]
    for p in procs:
        p.start()
    interrupted = []

    def on_signal(signum, frame):
        interrupted.append(signum)
        stop_flag.set()

    with stop_signals(on_signal):
        failures: list[str] = []
        try:
            ready = set()
            deadline = time.monotonic() + READY_TIMEOUT_S
            while len(ready) < n and not interrupted:
                try:
                    kind, i, data = q.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue_mod.Empty:
                    raise RuntimeError(
                        f"workers did not start within {READY_TIMEOUT_S:g} s") from None
                if kind == "failed":
                    raise RuntimeError(f"worker {i} failed to start: {data}")
                ready.add(i)
            writer = ResultsWriter(out_dir, header)  # before the origin: it syncs to disk
            cpu_before = hostcpu.snapshot()
            t0_value.value = time.monotonic() + START_LEAD_S
            started = time.time() + START_LEAD_S
            writer.start(started)
            merger = Merger(n, Aggregator(writer, options.profile, on_progress, until, end_flag.set))
            go.set()
            while True:
                try:
                    kind, i, data = q.get(timeout=0.2)
                except queue_mod.Empty:
                    kind = None
                if kind == "interval":
                    merger.interval(i, Interval.from_wire(data))
                elif kind == "done":
                    merger.finish(i, data)
                elif kind == "failed":
                    failures.append(f"worker {i} failed: {data}")
                    merger.finish(i, None)
                for idx, p in enumerate(procs):
                    if idx not in merger.finished and not p.is_alive() and q.empty():
                        failures.append(f"worker {idx} died (exit code {p.exitcode})")
                        merger.finish(idx, None)
                if merger.all_finished:
                    break
            merger.drain()
            finished = merger.finished
            elapsed = max((d["elapsed_s"] for d in finished.values() if d), default=0.0)
            stopped = bool(interrupted) or any(d and d["stopped_early"] for d in finished.values())
            schedulers = [d["scheduler"] for d in finished.values() if d]
            cuts = [d["ended_s"] for d in finished.values() if d and d["ended_s"] is not None]
            cpu = hostcpu.usage(cpu_before, hostcpu.snapshot(), extra_ours_s=sum(
                d["cpu_s"] for d in finished.values() if d))
            return finish(writer, options, started=started, elapsed_s=elapsed,
                          complete=not stopped and not failures, extra_reasons=failures,
                          ended_s=max(cuts) if cuts and not stopped else None,
                          scheduler=merge_scheduler(schedulers) if schedulers else None, cpu=cpu)
        finally:
            stop_flag.set()
            go.set()
            for p in procs:
                p.join(timeout=5.0)
                if p.is_alive():
                    p.kill()
                    p.join()
