"""A probe's verdict: does the SLO hold at this rate, and how sure are we? Pure functions.

A probe sends a constant rate for a while; each request is over the latency bound or not
(a timeout or an error counts as over). The SLO says at most ``1 - p`` of requests may be
over (p = 0.99 for a p99 bound). With ``t`` of ``n`` over:

- PASS when the one-sided Clopper–Pearson upper bound on the over-bound fraction, at the
  given confidence, is <= 1 - p. This is MLPerf LoadGen's early-stopping condition
  (BinomCDF(t; n, 1 - p) <= 1 - confidence), so ``min_requests`` reproduces its table:
  459 requests at t = 0, 662 at t = 1 (p = 0.99, confidence 0.99).
- FAIL when the lower bound is > 1 - p.
- UNDECIDED otherwise: the probe should go on.

Consecutive latencies in a queue are not independent (near capacity one slow request
delays the ones behind it), so counting every request as a trial is over-confident
exactly where the decision is made. ``inflation`` measures how much more the over-bound
fraction varies than independent trials would (batch means over blocks longer than the
correlation time), and ``judge`` divides the counts by it before bounding.

Above capacity the backlog grows without bound: ``backlog_trend`` says when a probe's
requests in flight keep rising beyond noise, which FAILS it whatever its p99 says so far.
Wiring these into a sequential probe and the capacity search is issue 15's next step.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np

PASS, FAIL, UNDECIDED = "PASS", "FAIL", "UNDECIDED"
_BISECT_STEPS = 60


def binom_cdf(k: int, n: int, q: float) -> float:
    """P(X <= k) for X ~ Binomial(n, q), summed in log space (exact to float rounding).

    The log pmf comes from the ratio pmf(i+1)/pmf(i) = (n-i)/(i+1) * q/(1-q), summed with
    numpy, so a bound on thousands of requests costs microseconds (a probe decides inside
    the generator's event loop)."""
    if k < 0:
        return 0.0
    if k >= n or q <= 0.0:
        return 1.0
    if q >= 1.0:
        return 0.0
    i = np.arange(k, dtype=np.float64)
    steps = np.log(n - i) - np.log(i + 1.0) + (math.log(q) - math.log1p(-q))
    logs = np.concatenate(([n * math.log1p(-q)], n * math.log1p(-q) + np.cumsum(steps)))
    top = float(logs.max())
    return min(1.0, math.exp(top) * float(np.exp(logs - top).sum()))


def _bisect(decreasing, target: float) -> float:
    """The q in [0, 1] where ``decreasing(q)`` crosses ``target``."""
    lo, hi = 0.0, 1.0
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if decreasing(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def upper_bound(t: int, n: int, confidence: float) -> float:
    """One-sided Clopper–Pearson upper bound on the fraction behind ``t`` of ``n``."""
    if n <= 0 or t >= n:
        return 1.0
    return _bisect(lambda q: binom_cdf(t, n, q), 1.0 - confidence)


def lower_bound(t: int, n: int, confidence: float) -> float:
    """One-sided Clopper–Pearson lower bound on the fraction behind ``t`` of ``n``."""
    if n <= 0 or t <= 0:
        return 0.0
    # P(X >= t; q) = 1 - cdf(t - 1; q) rises with q: find where it reaches 1 - confidence
    return _bisect(lambda q: binom_cdf(t - 1, n, q), confidence)


def min_requests(t: int, p: float = 0.99, confidence: float = 0.99) -> int:
    """The fewest requests with ``t`` over the bound that can PASS (MLPerf's early stopping)."""
    allowed = 1.0 - p
    lo, hi = t + 1, max(2 * (t + 1), 16)
    while binom_cdf(t, hi, allowed) > 1.0 - confidence:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if binom_cdf(t, mid, allowed) <= 1.0 - confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo


def inflation(over: np.ndarray, block: int) -> float:
    """How many times more the over-bound fraction varies than independent requests would
    (>= 1), from the means of consecutive blocks of ``block`` requests (batch means).

    ``over``: one 0/1 per request, in send order. Blocks must be longer than the queue's
    correlation time for the estimate to hold; with fewer than 10 blocks, or no variation
    at all, there is nothing to estimate and 1.0 is returned.
    """
    x = np.asarray(over, dtype=np.float64)
    blocks = x.size // block if block > 0 else 0
    if blocks < 10:
        return 1.0
    means = x[: blocks * block].reshape(blocks, block).mean(axis=1)
    q = float(x[: blocks * block].mean())
    if q <= 0.0 or q >= 1.0:
        return 1.0
    return max(1.0, float(means.var(ddof=1)) * block / (q * (1.0 - q)))


@dataclasses.dataclass(frozen=True)
class Verdict:
    """PASS / FAIL / UNDECIDED with the evidence behind it."""

    outcome: str
    requests: int
    over: int
    inflation: float  # the counts were divided by this before bounding
    lower: float  # bounds on the over-bound fraction at the confidence asked for
    upper: float
    allowed: float  # 1 - p

    @property
    def fraction(self) -> float:
        return self.over / self.requests if self.requests else 0.0


def judge(requests: int, over: int, *, p: float = 0.99, confidence: float = 0.95,
          inflation_factor: float = 1.0) -> Verdict:
    """The verdict on ``over`` of ``requests`` over the latency bound (timeouts and errors
    counted as over), for a p-quantile SLO at ``confidence``.

    With ``inflation_factor`` f > 1 the evidence is worth n / f independent requests; the
    counts are rounded the cautious way for each side (for PASS fewer requests and more
    over, for FAIL more requests and fewer over), so neither verdict comes sooner than it
    should.
    """
    if not (0.0 < p < 1.0 and 0.0 < confidence < 1.0):
        raise ValueError("p and confidence must lie strictly between 0 and 1")
    if requests < 0 or not 0 <= over <= requests:
        raise ValueError(f"need 0 <= over <= requests, got {over} of {requests}")
    f = max(1.0, inflation_factor)
    n_pass, n_fail = math.floor(requests / f), math.ceil(requests / f)
    upper = upper_bound(min(n_pass, math.ceil(over / f)), n_pass, confidence)
    lower = lower_bound(min(n_fail, math.floor(over / f)), n_fail, confidence)
    allowed = 1.0 - p
    outcome = PASS if upper <= allowed else FAIL if lower > allowed else UNDECIDED
    return Verdict(outcome, requests, over, f, lower, upper, allowed)


@dataclasses.dataclass(frozen=True)
class Trend:
    """A least-squares slope of a per-second series (e.g. requests in flight) and whether
    it keeps rising beyond noise at the confidence asked for."""

    slope: float  # units per second
    stderr: float
    rising: bool


def backlog_trend(values: np.ndarray, confidence: float = 0.95) -> Trend:
    """Above capacity the backlog grows without bound, so a finite probe that starts empty
    under-states what a longer run would see: a probe whose backlog keeps rising FAILS
    whatever its p99 says so far. ``rising`` when the slope's one-sided lower confidence
    bound (normal approximation, residual standard error) is above zero.

    Residuals of a queue are correlated, which makes the standard error too small; the
    caller should pass seconds after the transient and judge a rise together with the
    latency verdict, not alone.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.size < 3:
        return Trend(0.0, math.inf, False)
    t = np.arange(y.size, dtype=np.float64)
    tc = t - t.mean()
    sxx = float(tc @ tc)
    slope = float(tc @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * tc
    stderr = math.sqrt(float(resid @ resid) / (y.size - 2) / sxx)
    z = statistics.NormalDist().inv_cdf(confidence)
    return Trend(slope, stderr, slope - z * stderr > 0.0)
