"""The sweep's in-cluster generator agents (``--generators N``): their Job applied once for
the whole sweep, every run of the sweep sent through them (warm-up, first guess, probes),
the Job deleted at the end.

``generators_up`` applies the agents' Job (and the headless Service they send to), waits
for every agent, yields ``Generators``, and deletes both when the sweep ends, however it
ends (Ctrl-C and errors included). ``Generators.run`` is ``loadgen.run.run`` through the
agents: before each run it takes fresh links to the agents (``GeneratorJob.links``, which
waits for a pod the Job put in place of one that died, with its index), so a probe voided
by a dead agent is repeated on its replacement; a run the agents could not even start is
tried again the same way, ``start_attempts`` times in all.

Agents run open-loop shares only, so the warm-up and the first guess, closed loops from
this machine (``sweep.warmup``, ``sweep.saturation``), are open-loop runs through them:
``warm_and_record`` a gentle constant rate until the seconds' median latency settles,
``saturate`` a rate far above capacity with the in-flight ceiling at the closed loop's
concurrency (see there). Both are kept as run directories (``warmup/``, ``guess/``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from deploy import generators
from deploy.target import DeployError
from formats.agent import RESOLVE_PATH, AgentCallError
from loadgen import recorder
from loadgen.options import GeneratorOptions
from loadgen.run import RunOptions, RunResult, run
from loadgen.schedule import Profile
from sweep.saturation import Saturation
from sweep.status import write_json
from sweep.warmup import WarmupOptions, WarmupResult, settled

if TYPE_CHECKING:  # not imported otherwise: a local sweep loads no Kubernetes client
    from deploy.agents import GeneratorJob

START_ATTEMPTS = 3
RETRY_S = 5.0  # between attempts: a hung agent's pod leaves Ready within its probe's 3 x 2 s
RESOLVE_TIMEOUT_S = 180.0  # cluster DNS follows a new Config's pods within its cache's 30 s
WARMUP_RPS_PER_REPLICA = 2.0  # gentle: a replica serving fewer than 2 req/s is too slow to search
OVERDRIVE = 4.0  # the first guess's offered rate: this many times what its ceiling completes unqueued
MAX_OFFERED_RPS = 20_000.0


class Generators:
    """Runs through the agents of one ``GeneratorJob``."""

    def __init__(self, job: GeneratorJob, *, start_attempts: int = START_ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.job = job
        self.start_attempts = start_attempts
        self._sleep, self._clock = sleep, clock

    @property
    def count(self) -> int:
        return self.job.job.count

    def record(self) -> dict:
        """sweep.json's "generators"."""
        return {"count": self.count, "image": self.job.job.image, "locked": self.job.job.locked,
                "job": generators.JOB_NAME,
                "namespace": self.job.namespace, "cpu": self.job.job.cpu, "memory_gb": self.job.job.memory_gb}

    def run(self, options: RunOptions, out_dir: str, **kw) -> RunResult:
        """``loadgen.run.run(options, out_dir, agents=..., **kw)`` on the agents as they are now."""
        for attempt in range(1, self.start_attempts + 1):
            links = self.job.links()
            try:
                return run(options, out_dir, agents=links, **kw)
            except AgentCallError as e:
                if attempt == self.start_attempts:
                    raise AgentCallError(f"{e} ({attempt} attempts)") from None
            self._sleep(RETRY_S)
        raise AssertionError("unreachable")

    def wait_resolved(self, urls: Sequence[str], replicas: int, timeout_s: float = RESOLVE_TIMEOUT_S) -> None:
        """Until every agent resolves ``urls`` to one target per replica (``replicas`` of
        them): DNS follows a newly deployed Config's pods after a while. DeployError when
        it does not within ``timeout_s``."""
        query = f"{RESOLVE_PATH}?{urlencode([('target', u) for u in urls])}"
        deadline = self._clock() + timeout_s
        while True:
            seen = []
            for link in self.job.links():
                try:
                    seen.append(link.call("GET", query, None, timeout=10.0)["targets"])
                except (AgentCallError, KeyError, TypeError) as e:
                    seen.append(f"{link.name}: {e}")
            if all(isinstance(t, list) and len(t) == replicas * len(urls) for t in seen):
                return
            if self._clock() > deadline:
                raise DeployError(f"the generator agents do not resolve {', '.join(urls)} to its {replicas} "
                                  f"replicas after {timeout_s:g} s: {seen}")
            self._sleep(2.0)


    def warm_and_record(self, urls: Sequence[str], load: GeneratorOptions, options: WarmupOptions, *,
                        replicas: int, config_dir: Path) -> tuple[WarmupResult, str | None]:
        """The warm-up through the agents: WARMUP_RPS_PER_REPLICA per replica, open loop,
        until the median of each second's median latency over ``options.window`` seconds
        is within ``options.tolerance`` of the window before (``warmup.settled``), after at
        least ``options.min_requests`` requests, for at most ``options.max_seconds``.
        Writes warmup.json (``latencies_per: second``) and the run in ``warmup/``."""
        rate = WARMUP_RPS_PER_REPLICA * max(1, replicas)
        medians: list[float] = []
        done = [0, 0]  # requests answered, with or without an error

        def until(interval: recorder.Interval) -> bool:
            done[0] += interval.ok + interval.error_count
            done[1] += interval.ok
            if interval.ok:
                medians.append(recorder.percentiles(interval.hists["corrected"], (50.0,))[50.0] / 1000.0)
            return done[0] >= options.min_requests and settled(medians, options.window, options.tolerance)

        profile = Profile(kind="constant", rate=rate, duration_s=options.max_seconds, arrivals="uniform", seed=0)
        result = self.run(RunOptions.of(load, targets=tuple(urls), profile=profile), _fresh(config_dir / "warmup"),
                          until=until)
        if result.interrupted:
            raise KeyboardInterrupt
        totals = result.record["totals"]
        warm = WarmupResult(requests=totals["sent"], ok=totals["ok"], seconds=float(result.record["duration_s"]),
                            settled=settled(medians, options.window, options.tolerance),
                            latencies_ms=tuple(medians), errors=tuple(sorted(totals["error_classes"])),
                            window=options.window)
        write_json(config_dir / "warmup.json", warm.record() | {"latencies_per": "second", "generators": self.count})
        if warm.ok == 0:
            return warm, "no warm-up request succeeded: " + ", ".join(warm.errors[:3])
        return warm, None

    def saturate(self, urls: Sequence[str], load: GeneratorOptions, *, replicas: int, latency_ms: float,
                 out_dir: Path, concurrency: int = 4, seconds: float = 5.0, settle_s: float = 1.0) -> Saturation:
        """The first guess through the agents, which have no closed loop: a constant rate
        OVERDRIVE times what ``concurrency`` requests per replica complete at the warm-up's
        ``latency_ms``, with the in-flight ceiling at ``concurrency`` per replica across
        the agents. The arrivals over the ceiling are dropped, so the servers always hold
        that many requests, as in the closed loop (``sweep.saturation``): the completions
        per second after ``settle_s`` are its throughput."""
        outstanding = concurrency * max(1, replicas)
        rate = min(MAX_OFFERED_RPS, OVERDRIVE * outstanding * 1000.0 / max(latency_ms, 1.0))
        ceiling = dataclasses.replace(load, max_in_flight=max(1, math.ceil(outstanding / self.count)))
        counted = [0, 0]

        def until(interval: recorder.Interval) -> bool:
            if settle_s < interval.t_s <= settle_s + seconds:
                counted[0] += interval.ok
                counted[1] += interval.error_count
            return False

        profile = Profile(kind="constant", rate=rate, duration_s=settle_s + seconds, arrivals="uniform", seed=0)
        if self.run(RunOptions.of(ceiling, targets=tuple(urls), profile=profile), _fresh(out_dir),
                    until=until).interrupted:
            raise KeyboardInterrupt
        return Saturation(counted[0] / seconds, counted[0], counted[1], seconds)


def _fresh(path: Path) -> str:
    """An empty run directory at ``path`` (a Config deployed again warms up again)."""
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


@contextlib.contextmanager
def generators_up(job: GeneratorJob, *, on_problem: Callable[[str], None]) -> Iterator[Generators]:
    """The agents' Job applied and every agent ready for the block; deleted after it,
    whatever happens. A deletion that fails is told to ``on_problem`` with what to do."""
    try:
        job.apply()
        job.links()
        yield Generators(job)
    finally:
        try:
            job.delete()
        except DeployError as e:
            on_problem(f"the generator agents' Job could not be deleted: {e}; delete it with kubectl -n "
                       f"{job.namespace} delete job/{generators.JOB_NAME} service/{generators.REPLICAS_SERVICE}")
