"""One probe of the capacity search: a constant rate held until the SLO verdict is clear.

A probe's decision is a pure function of its seconds (``Second``: what completed in each
second, how many were over the latency bound, what was in flight) and ``ProbeRules``:

- The first ``transient_s`` seconds are left out: the queue starts empty.
- The decision is taken at a few *looks* (``min_s``, then every ``look_growth`` times
  longer, up to ``max_s``). Looking repeatedly gives chance more tries, so each look uses
  ``1 - (1 - confidence) / looks`` (Bonferroni): the whole probe keeps ``confidence``.
- Latency: ``verdict.judge`` on the over-bound count (errors and timeouts count as over),
  the counts first divided by the measured *inflation* (batch means over blocks of
  seconds: consecutive latencies in a queue are not independent trials). The inflation
  is taken at the SLO's bound and at lower rungs of a ladder (bound/2, /4, /8): a rare
  exceedance has too few events to measure its own clustering, and a lower level's
  clustering is a floor for it.
- Errors: the same bound on the error fraction against the SLO's error rate.
- Backlog: above capacity the queue grows without bound, so a probe whose requests in
  flight *and* mean latency keep rising (block means, slope beyond noise, and fast
  enough to add half the bound's waiting within ``max_s``) FAILS whatever its p99 says
  so far. Six block means of a queue near capacity are themselves correlated (its
  relaxation time is many seconds), so a slope's t-test on them is over-confident: the
  trend is tested at ``TREND_ERROR_SHARE`` of the look's error (``trend_confidence``).
- At ``max_s`` a probe still undecided is decided on its point estimate and marked
  ``marginal``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from formats.slo import Slo
from sweep import verdict
from sweep.verdict import FAIL, PASS, UNDECIDED

LADDER = (1.0, 0.5, 0.25, 0.125)  # latency levels (x the SLO's bound) whose clustering is measured
MIN_EVENTS = 10  # a ladder rung with fewer exceedances tells nothing about clustering
MIN_BLOCKS = 10  # batch means need at least this many blocks
TREND_BLOCKS = 6  # the backlog trend is fitted on this many block means
# the trend test's share of a look's error: at the look's own error, a 40 s probe at 0.9x
# the stand-in's capacity (one 65 ms FIFO server, p99 <= 1 s) FAILED on a "rising" backlog
# in 5% of probes, at a tenth of it in 1.7%, while 5% past raw capacity still FAILS on it
# by 17 s (tests/probe_truth_test.py)
TREND_ERROR_SHARE = 0.1


@dataclasses.dataclass(frozen=True)
class ProbeRules:
    """How a probe is judged and how long it may run."""

    latency_ms: float  # the SLO's latency bound
    p: float = 0.99  # ... on this quantile
    error_rate: float = 0.01
    confidence: float = 0.95
    transient_s: int = 3
    min_s: int = 13  # the transient and MIN_BLOCKS one-second blocks
    max_s: int = 60
    look_growth: float = 1.25

    def __post_init__(self) -> None:
        if not 0 <= self.transient_s < self.min_s <= self.max_s:
            raise ValueError("need 0 <= transient_s < min_s <= max_s")
        if self.look_growth <= 1.0:
            raise ValueError("look_growth must be > 1")

    @classmethod
    def from_slo(cls, slo: Slo, **kw) -> ProbeRules:
        return cls(latency_ms=slo.p99_ms, p=0.99, error_rate=slo.error_rate, **kw)

    @property
    def looks(self) -> tuple[int, ...]:
        """The seconds at which the probe is judged."""
        out, t = [], float(self.min_s)
        while t < self.max_s:
            if not out or math.ceil(t) > out[-1]:
                out.append(math.ceil(t))
            t *= self.look_growth
        if not out or out[-1] != self.max_s:
            out.append(self.max_s)
        return tuple(out)

    @property
    def look_confidence(self) -> float:
        return 1.0 - (1.0 - self.confidence) / len(self.looks)

    @property
    def trend_confidence(self) -> float:
        return 1.0 - (1.0 - self.look_confidence) * TREND_ERROR_SHARE


@dataclasses.dataclass(frozen=True)
class Second:
    """What completed in one second of a probe (the generator's interval)."""

    t_s: int  # 1-based end of the second
    requests: int  # answered, failed or dropped in this second
    over: int  # over the latency bound, errors included
    errors: int
    in_flight: int  # at the second's end
    mean_ms: float | None  # mean latency of the answered ones
    ladder: tuple[int, ...]  # over LADDER[k] x the bound, errors included (ladder[0] == over)


@dataclasses.dataclass(frozen=True)
class Decision:
    outcome: str  # PASS / FAIL / UNDECIDED
    marginal: bool  # decided on the point estimate at max_s
    reason: str
    requests: int  # after the transient
    over: int
    errors: int
    inflation: float
    over_lo: float  # bounds on the over-bound fraction (look confidence)
    over_hi: float
    backlog_slope: float  # requests in flight per second (block means)


def inflation(seconds: Sequence[Second]) -> float | None:
    """How much more the over-bound counts vary than independent requests would (>= 1):
    batch means over MIN_BLOCKS or more blocks of whole seconds, the largest over the
    ladder's rungs that have at least MIN_EVENTS exceedances (1.0 when none has); None
    when there are too few seconds for MIN_BLOCKS blocks."""
    block = max(1, len(seconds) // MIN_BLOCKS)
    nblocks = len(seconds) // block
    if nblocks < MIN_BLOCKS:
        return None
    n = np.array([s.requests for s in seconds[: nblocks * block]], dtype=np.float64).reshape(nblocks, block).sum(1)
    worst = 1.0
    for k in range(len(LADDER)):
        x = np.array([s.ladder[k] for s in seconds[: nblocks * block]],
                     dtype=np.float64).reshape(nblocks, block).sum(1)
        total, requests = x.sum(), n.sum()
        if total < MIN_EVENTS or requests <= 0 or total >= requests:
            continue
        q = total / requests
        var = float(((x - q * n) ** 2).sum()) / (nblocks - 1)
        worst = max(worst, var / (q * (1.0 - q) * requests / nblocks))
    return worst


def backlog_rising(seconds: Sequence[Second], rules: ProbeRules, confidence: float) -> tuple[bool, float]:
    """(rising, slope): requests in flight and mean latency both keep rising beyond noise,
    fitted on TREND_BLOCKS block means (blocks smooth the queue's short-range correlation),
    and fast enough to matter: a backlog growing by ``slope`` requests a second adds
    ``slope / rate`` seconds of waiting a second, which over the probe's ``max_s`` must
    reach half the SLO's bound (a queue near capacity wanders; one past it runs away)."""
    if len(seconds) < TREND_BLOCKS * 2:
        return False, 0.0
    block = len(seconds) // TREND_BLOCKS
    used = seconds[len(seconds) - block * TREND_BLOCKS:]  # the latest whole blocks
    backlog = np.array([s.in_flight for s in used], dtype=np.float64).reshape(TREND_BLOCKS, block).mean(1)
    means = [s.mean_ms for s in used]
    if any(m is None for m in means):
        return False, 0.0
    latency = np.array(means, dtype=np.float64).reshape(TREND_BLOCKS, block).mean(1)
    b = verdict.backlog_trend(backlog, confidence)
    lat = verdict.backlog_trend(latency, confidence)
    slope = b.slope / block  # per second
    rate = sum(s.requests for s in used) / len(used)
    matters = rate > 0 and slope / rate * rules.max_s >= rules.latency_ms / 2000.0
    return bool(b.rising and lat.rising and matters), slope


def decide(seconds: Sequence[Second], rules: ProbeRules, *, final: bool = False) -> Decision:
    """The probe's decision on its seconds so far (``final``: it cannot run longer)."""
    post = [s for s in seconds if s.t_s > rules.transient_s]
    n = sum(s.requests for s in post)
    over = sum(s.over for s in post)
    errors = sum(s.errors for s in post)
    conf = rules.look_confidence
    f = inflation(post)
    if f is None:  # too short to measure the correlation: no verdict yet
        if not final:
            return Decision(UNDECIDED, False, "too few seconds to measure correlation", n, over, errors,
                            math.nan, 0.0, 1.0, 0.0)
        f = 1.0
    lat = verdict.judge(n, over, p=rules.p, confidence=conf, inflation_factor=f)
    err = verdict.judge(n, errors, p=1.0 - rules.error_rate, confidence=conf, inflation_factor=f)
    rising, slope = backlog_rising(post, rules, rules.trend_confidence)

    def done(outcome: str, reason: str, marginal: bool = False) -> Decision:
        return Decision(outcome, marginal, reason, n, over, errors, f, lat.lower, lat.upper, slope)

    allowed = 1.0 - rules.p
    if n == 0:
        if final:
            return done(FAIL, "no request completed", marginal=True)
        return done(UNDECIDED, "no request completed yet")
    if lat.outcome == FAIL:
        return done(FAIL, f"over-bound fraction >= {lat.lower:.2%} > {allowed:.2%}")
    if err.outcome == FAIL:
        return done(FAIL, f"error fraction >= {err.lower:.2%} > {rules.error_rate:.2%}")
    if rising:
        return done(FAIL, f"backlog keeps rising ({slope:+.2f} in flight per s)")
    if lat.outcome == PASS and err.outcome == PASS:
        return done(PASS, f"over-bound fraction <= {lat.upper:.2%} <= {allowed:.2%}")
    if not final:
        return done(UNDECIDED, f"over-bound fraction {lat.lower:.2%}-{lat.upper:.2%}")
    ok = over / n <= allowed and errors / n <= rules.error_rate
    return done(PASS if ok else FAIL, f"undecided at {rules.max_s} s: point estimate {over / n:.2%}",
                marginal=True)


def due(t_s: int, rules: ProbeRules) -> bool:
    """Whether second ``t_s`` is one of the probe's looks."""
    return t_s in rules.looks or t_s >= rules.max_s


class Watch:
    """The sequential rule, second by second: ``watch(second)`` is True once the probe is
    decided (the generator's ``until``); ``result()`` is the decision (at the cut, or the
    final one when the probe ran to ``max_s``)."""

    def __init__(self, rules: ProbeRules) -> None:
        self.rules = rules
        self.seconds: list[Second] = []
        self.decision: Decision | None = None

    def __call__(self, second: Second) -> bool:
        self.seconds.append(second)
        if self.decision is None and due(second.t_s, self.rules):
            d = decide(self.seconds, self.rules, final=second.t_s >= self.rules.max_s)
            if d.outcome != UNDECIDED:
                self.decision = d
        return self.decision is not None

    def result(self) -> Decision:
        return self.decision or decide(self.seconds, self.rules, final=True)
