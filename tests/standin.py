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
