"""One run across generator agents (``loadgen.agent``), merged into the files a local run writes.

Agent i of N sends every N-th arrival (``loadgen.share``). The controller measures each
agent's clock against its own (the best of a few ``/ready`` round trips: the offset is the
agent's wall clock minus the round trip's midpoint, uncertain by half the round trip),
hands every agent its share, waits until all have connected, and gives each the same
instant, in its own clock, as the schedule's origin. It then polls each agent's seconds
and merges them (``aggregate.Merger``: a second is written once every share of it is in)
into series.csv, the hlogs and run.json, with ``until`` asked each merged second, as a
local run does. An agent that fails, dies or stops answering makes the run invalid
(``validity.reasons`` says which): a run is never judged on part of its arrivals. Every
agent must send to the same targets (a name each resolves, ``loadgen.resolve``), else
the run does not start; run.json's ``generators.targets`` lists them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from formats.agent import READY_PATH, AgentCallError
from loadgen.aggregate import Aggregator, Merger, Progress, Until
from loadgen.engine import merge_scheduler
from loadgen.launch import START_LEAD_S, finish, stop_signals
from loadgen.options import RunOptions
from loadgen.payload import Payload
from loadgen.recorder import Interval
from loadgen.results import ResultsWriter
from loadgen.share import Share

CLOCK_SAMPLES = 5
POLL_S = 0.25
LOST_AFTER_S = 5.0  # an agent that has not answered for this long is lost
START_TIMEOUT_S = 90.0  # an agent answers its share once its worker has connected


class AgentLink(Protocol):
    """How the controller reaches one agent: a direct URL, or the API server's pod proxy."""

    name: str

    def call(self, method: str, path: str, body: dict | None, timeout: float) -> dict:
        """The agent's JSON answer; AgentCallError when it fails."""
        ...


@dataclasses.dataclass(frozen=True)
class HttpAgent:
    """An agent at a URL the controller reaches directly (``http://HOST:PORT``)."""

    url: str

    @property
    def name(self) -> str:
        return self.url

    def call(self, method: str, path: str, body: dict | None, timeout: float) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            why = e.read().decode(errors="replace")[:300]
            raise AgentCallError(f"agent {self.url}: {method} {path}: {e.code} {why}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise AgentCallError(f"agent {self.url}: {method} {path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Clock:
    offset_s: float  # the agent's wall clock minus ours
    uncertainty_s: float  # half the best round trip


def measure_clock(agent: AgentLink, samples: int = CLOCK_SAMPLES) -> Clock:
    best: Clock | None = None
    for _ in range(samples):
        sent = time.time()
        answer = agent.call("GET", READY_PATH, None, timeout=10.0)
        back = time.time()
        clock = Clock(float(answer["wall"]) - (sent + back) / 2.0, (back - sent) / 2.0)
        if best is None or clock.uncertainty_s < best.uncertainty_s:
            best = clock
    assert best is not None
    return best


def run_remote(options: RunOptions, agents: Sequence[AgentLink], body: Payload, out_dir: str, header: dict,
               on_progress: Callable[[Progress], None] | None = None, until: Until | None = None) -> dict:
    """``options``' run, its arrivals shared by ``agents``; returns run.json's record.
    AgentCallError when the agents could not even start it (nothing was written then);
    once started, a failing agent makes the run invalid instead. Ctrl-C or SIGTERM stops
    every agent and writes what was measured."""
    n = len(agents)
    if n < 1:
        raise ValueError("run_remote needs at least one agent")
    options = dataclasses.replace(options, workers=n)
    path = f"/runs/{uuid.uuid4().hex[:12]}"
    generators: dict = {"agents": [a.name for a in agents]}
    failures: list[str] = []
    interrupted: list[int] = []
    writer: ResultsWriter | None = None
    merger: Merger | None = None
    started = 0.0
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=n)
    with stop_signals(lambda signum, frame: interrupted.append(signum)):
        try:
            clocks = list(pool.map(measure_clock, agents))
            rtt_s = 2.0 * max(c.uncertainty_s for c in clocks)
            generators |= {"clock_skew_ms": round(rtt_s * 500.0, 3),
                           "clock_offsets_ms": [round(c.offset_s * 1000.0, 3) for c in clocks]}
            shares = [Share(options=options, index=i, payload=body).to_wire() for i in range(n)]
            ready = list(pool.map(lambda a, s: a.call("POST", path, s, START_TIMEOUT_S), agents, shares))
            generators["transports"] = [r.get("transport") for r in ready]
            generators["targets"] = sent_to(ready, options.targets)
            writer = ResultsWriter(out_dir, {**header, "options": {**header.get("options", {}), "workers": n}})
            started = time.time() + START_LEAD_S + 3.0 * rtt_s  # the go calls take about one round trip
            writer.start(started)
            leads = list(pool.map(lambda a, c: a.call("POST", path + "/go", {"start_at": started + c.offset_s}, 10.0)
                                  .get("lead_s", 0.0), agents, clocks))
            late = [i for i, lead in enumerate(leads) if lead <= 0.0]
            if late:
                failures.append(f"generators {late} were told the start {-min(leads) * 1000:.0f} ms after it was due")
            merger = Merger(n, Aggregator(writer, options.profile, on_progress, until))
            _collect(pool, agents, path, merger, failures, interrupted)
        except AgentCallError as e:
            failures.append(str(e))
        finally:  # forgetting a run stops it first
            _broadcast(pool, agents, path, method="DELETE")
            pool.shutdown(wait=False)
    if writer is None:
        raise AgentCallError("the generator agents could not start the run: " + "; ".join(failures))
    finished = merger.finished if merger is not None else {}
    if merger is not None:
        merger.drain()
    done = [d for d in finished.values() if d]
    elapsed = max((d["elapsed_s"] for d in done), default=0.0)
    stopped = bool(interrupted) or any(d["stopped_early"] for d in done)
    cuts = [d["ended_s"] for d in done if d["ended_s"] is not None]
    schedulers = [d["scheduler"] for d in done]
    generators["interrupted"] = bool(interrupted)  # else an incomplete run lost an agent
    return finish(writer, options, started=started, elapsed_s=elapsed,
                  complete=not stopped and not failures and len(done) == n, extra_reasons=failures,
                  ended_s=max(cuts) if cuts and not stopped else None,
                  scheduler=merge_scheduler(schedulers) if schedulers else None, cpu=None,
                  generators=generators)


def sent_to(ready: Sequence[dict], targets: Sequence[str]) -> list[str]:
    """The targets every agent said it sends to (``loadgen.resolve``: a headless Service's
    name becomes a target per replica). AgentCallError when they differ: the union of the
    shares would not be the schedule's round-robin over the replicas."""
    lists = [tuple(r.get("targets") or targets) for r in ready]
    if len(set(lists)) > 1:
        raise AgentCallError("the agents resolved the targets differently: "
                             + "; ".join(f"generator {i}: {', '.join(t)}" for i, t in enumerate(lists)))
    return list(lists[0]) if lists else list(targets)


def _collect(pool: concurrent.futures.ThreadPoolExecutor, agents: Sequence[AgentLink], path: str, merger: Merger,
             failures: list[str], interrupted: list[int]) -> None:
    """Each agent polled by its own thread (a stalled one holds up no other); their seconds
    merged here, in order. Cuts every share once ``until`` has said so; stops them all
    once the run is invalid or interrupted."""
    answers: queue.Queue = queue.Queue()
    quit_ = threading.Event()
    for i, agent in enumerate(agents):
        threading.Thread(target=_poll, args=(i, agent, path, merger.reported, answers, quit_), daemon=True).start()
    last_answer = [time.monotonic()] * len(agents)
    told_end = told_stop = False
    try:
        while not merger.all_finished:
            try:
                i, view, error = answers.get(timeout=POLL_S)
            except queue.Empty:
                i, view, error = None, None, None
            if i is not None and i not in merger.finished and error is None:
                last_answer[i] = time.monotonic()
                for wire in view["intervals"]:
                    if wire["t_s"] > merger.reported[i]:  # a poll may overlap the one before
                        merger.interval(i, Interval.from_wire(wire))
                if view["failed"]:
                    failures.append(f"generator {i} failed: {view['failed']}")
                    merger.finish(i, None)
                elif view["done"] is not None:
                    merger.finish(i, view["done"])
            for k in range(len(agents)):
                if k not in merger.finished and time.monotonic() - last_answer[k] > LOST_AFTER_S:
                    failures.append(f"generator {k} ({agents[k].name}) stopped answering for {LOST_AFTER_S:g} s"
                                    + (f": {error}" if error is not None and i == k else ""))
                    merger.finish(k, None)
            if merger.aggregator.ended and not told_end:
                told_end = True
                _broadcast(pool, agents, path + "/end")
            if (failures or interrupted) and not told_stop:  # invalid already: stop the others' load
                told_stop = True
                _broadcast(pool, agents, path + "/stop")
    finally:
        quit_.set()


def _poll(i: int, agent: AgentLink, path: str, reported: dict[int, int], answers: queue.Queue,
          quit_: threading.Event) -> None:
    while not quit_.is_set():
        try:
            view = agent.call("GET", f"{path}?since={reported[i]}", None, timeout=LOST_AFTER_S)
        except AgentCallError as e:
            answers.put((i, None, e))
        else:
            answers.put((i, view, None))
            if view["failed"] or view["done"] is not None:
                return
        quit_.wait(POLL_S)


def _broadcast(pool: concurrent.futures.ThreadPoolExecutor, agents: Sequence[AgentLink], path: str,
               method: str = "POST") -> None:
    """Best effort, to all at once: an agent that cannot be told is already counted as failed or lost."""
    def tell(agent: AgentLink) -> None:
        with contextlib.suppress(AgentCallError):
            agent.call(method, path, None, timeout=5.0)

    list(pool.map(tell, agents))

