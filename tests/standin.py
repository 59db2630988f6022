"""Ground truth for capacity tests: a queue whose every latency is known exactly.

A stand-in deployment is ``servers`` replicas fed from one FIFO queue, each holding a
request for a fixed ``service_s`` (no CPU used: a server that sleeps). With deterministic
service times that is exactly c single-server queues fed in order, so each request's
latency follows from the arrival times alone: ``fifo_latencies`` simulates it, and a
stand-in server built the same way must report the same numbers.

A second discipline, for simulation only: ``ps_latencies``, a server that shares itself
equally among the requests it holds (processor sharing), as a server running every
request at once on its threads roughly does. ``simulated_truth`` finds either one's
SLO-bounded capacity by simulation.
"""

from __future__ import annotations

import collections
import heapq

import numpy as np


def fifo_latencies(arrivals_s: np.ndarray, service_s: float, servers: int = 1) -> np.ndarray:
    """Latency (arrival to completion, seconds) of each request, in arrival order, for
    ``servers`` identical FIFO servers with a fixed service time."""
    if servers < 1 or service_s <= 0:
        raise ValueError("need servers >= 1 and service_s > 0")
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if arrivals.size and np.any(np.diff(arrivals) < 0):
        raise ValueError("arrivals must be in order")
    free = [0.0] * servers  # when each server is next free
    heapq.heapify(free)
    done = np.empty_like(arrivals)
    for i, a in enumerate(arrivals.tolist()):
        start = max(a, heapq.heappop(free))
        done[i] = start + service_s
        heapq.heappush(free, done[i])
    return done - arrivals


def poisson_arrivals(rate: float, duration_s: float, seed: int) -> np.ndarray:
    """Seeded Poisson arrival times in [0, duration_s)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, int(rate * duration_s * 1.2) + 100)
    t = np.cumsum(gaps)
    return t[t < duration_s]


def ps_latencies(arrivals_s: np.ndarray, service_s: float) -> np.ndarray:
    """Latency of each request at one processor-sharing server, every request ``service_s``
    of work: N requests present each progress at 1/N, so with equal work they leave in
    arrival order, and each leaves once the server's virtual time (advancing at 1/N) has
    grown by ``service_s`` since it came."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    out = np.empty_like(arrivals)
    held: collections.deque[tuple[int, float]] = collections.deque()  # (request, virtual time at arrival)
    t = virtual = 0.0
    i, n = 0, arrivals.size
    while i < n or held:
        head, start = held[0] if held else (-1, 0.0)
        leaves = t + (start + service_s - virtual) * len(held) if held else np.inf
        if i < n and arrivals[i] < leaves:
            if held:
                virtual += (arrivals[i] - t) / len(held)
            t = arrivals[i]
            held.append((i, virtual))
            i += 1
        else:
            t, virtual = leaves, start + service_s
            held.popleft()
            out[head] = t - arrivals[head]
    return out


DISCIPLINES = ("fifo", "ps")


def round_robin_latencies(arrivals_s: np.ndarray, service_s: float, replicas: int,
                          discipline: str = "fifo") -> np.ndarray:
    """Latencies when arrival i goes to replica i % replicas, each replica its own server
    (FIFO or processor sharing) with a fixed service time (what the load generator does
    with one URL per replica)."""
    if discipline not in DISCIPLINES:
        raise ValueError(f"discipline must be one of {DISCIPLINES}")
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    out = np.empty_like(arrivals)
    for r in range(replicas):
        mine = arrivals[r::replicas]
        out[r::replicas] = fifo_latencies(mine, service_s, 1) if discipline == "fifo" else ps_latencies(mine, service_s)
    return out


def simulated_truth(service_s: float, replicas: int, slo_s: float, discipline: str, p: float = 0.99, *,
                    requests: int = 1_000_000, seed: int = 0) -> float:
    """The SLO-bounded capacity by simulation: the highest Poisson rate at which at least a
    fraction p of ``requests`` stationary requests finish within ``slo_s`` (bisection to
    0.1%; the same unit-rate arrivals scaled for every rate). For FIFO,
    ``tests.standin_server.truth_capacity`` is the same, vectorised."""
    unit = np.cumsum(np.random.default_rng(seed).standard_exponential(requests))
    lo, hi = 0.0, replicas / service_s
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        late = np.count_nonzero(round_robin_latencies(unit / mid, service_s, replicas, discipline) > slo_s)
        lo, hi = (mid, hi) if late <= (1.0 - p) * requests else (lo, mid)
    return lo


def probe_seconds(arrivals_s: np.ndarray, latencies_s: np.ndarray, latency_ms: float):
    """A simulated probe's seconds, as the generator reports them: requests binned by the
    second they complete in (1-based end), in flight counted at each second's end."""
    from sweep.probe import LADDER, Second

    done = arrivals_s + latencies_s
    end = int(np.ceil(arrivals_s.max())) if arrivals_s.size else 0
    second = np.maximum(1, np.ceil(done).astype(np.int64))
    out = []
    bound = latency_ms / 1000.0
    for t in range(1, end + 1):
        mine = latencies_s[second == t]
        in_flight = int(np.count_nonzero((arrivals_s <= t) & (done > t)))
        out.append(Second(t_s=t, requests=int(mine.size), over=int(np.count_nonzero(mine > bound)),
                          errors=0, in_flight=in_flight,
                          mean_ms=float(mine.mean() * 1000.0) if mine.size else None,
                          ladder=tuple(int(np.count_nonzero(mine > bound * k)) for k in LADDER)))
    return out


def simulated_probe(rate: float, service_s: float, replicas: int, rules, seed: int, discipline: str = "fifo"):
    """The decision a probe at ``rate`` reaches against the stand-in, simulated: the same
    sequential rule (sweep.probe.Watch) the real probe uses, fed the simulated seconds."""
    from sweep.probe import Watch

    arrivals = poisson_arrivals(rate, rules.max_s, seed)
    latencies = round_robin_latencies(arrivals, service_s, replicas, discipline)
    seconds = probe_seconds(arrivals, latencies, rules.latency_ms)
    watch = Watch(rules)
    for s in seconds:
        if watch(s):
            break
    return watch.result()


def simulated_capacity(service_s: float, replicas: int, rules, options, guesses, seeds, discipline: str = "fifo"):
    """A Config's capacity as a sweep finds it (``sweep.plan.SearchOptions``: its repeats,
    and more searches while ``wants_more``), each probe simulated against the stand-in;
    ``guesses`` and ``seeds`` give each search's first guess and each probe's arrival seed."""
    from sweep import estimate
    from sweep.search import Outcome, drive, search

    found, outcomes = [], []

    def probe(rate: float) -> Outcome:
        outcome = Outcome(rate, simulated_probe(rate, service_s, replicas, rules, next(seeds), discipline))
        outcomes.append(outcome)
        return outcome

    while True:
        cap = estimate.capacity(found, outcomes, p=rules.p, confidence=rules.confidence,
                                bound_s=rules.latency_ms / 1000.0)
        if not options.wants_more(cap, len(found)):
            return cap
        found.append(drive(search(next(guesses), options.search_rules()), probe)[0])
