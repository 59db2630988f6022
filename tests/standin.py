"""Ground truth for capacity tests: a queue whose every latency is known exactly.

A stand-in deployment is ``servers`` replicas fed from one FIFO queue, each holding a
request for a fixed ``service_s`` (no CPU used: a server that sleeps). With deterministic
service times that is exactly c single-server queues fed in order, so each request's
latency follows from the arrival times alone: ``fifo_latencies`` simulates it, and a
stand-in server built the same way must report the same numbers.
"""

from __future__ import annotations

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


def round_robin_latencies(arrivals_s: np.ndarray, service_s: float, replicas: int) -> np.ndarray:
    """Latencies when arrival i goes to replica i % replicas, each replica its own FIFO
    server with a fixed service time (what the load generator does with one URL per replica)."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    out = np.empty_like(arrivals)
    for r in range(replicas):
        out[r::replicas] = fifo_latencies(arrivals[r::replicas], service_s, 1)
    return out


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


def simulated_probe(rate: float, service_s: float, replicas: int, rules, seed: int):
    """The decision a probe at ``rate`` reaches against the stand-in, simulated: the same
    sequential rule (sweep.probe.Watch) the real probe uses, fed the simulated seconds."""
    from sweep.probe import Watch

    arrivals = poisson_arrivals(rate, rules.max_s, seed)
    seconds = probe_seconds(arrivals, round_robin_latencies(arrivals, service_s, replicas), rules.latency_ms)
    watch = Watch(rules)
    for s in seconds:
        if watch(s):
            break
    return watch.result()


def simulated_capacity(service_s: float, replicas: int, rules, options, guesses, seeds):
    """A Config's capacity as a sweep finds it (``sweep.plan.SearchOptions``: its repeats,
    and more searches while ``wants_more``), each probe simulated against the stand-in;
    ``guesses`` and ``seeds`` give each search's first guess and each probe's arrival seed."""
    from sweep import estimate
    from sweep.search import Outcome, drive, search

    found, outcomes = [], []

    def probe(rate: float) -> Outcome:
        outcome = Outcome(rate, simulated_probe(rate, service_s, replicas, rules, next(seeds)))
        outcomes.append(outcome)
        return outcome

    while True:
        cap = estimate.capacity(found, outcomes, p=rules.p, confidence=options.confidence)
        if not options.wants_more(cap, len(found)):
            return cap
        found.append(drive(search(next(guesses), options.search_rules()), probe)[0])
