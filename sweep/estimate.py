"""A Config's capacity from all of its probes: the long-run crossing, pooled. Pure functions.

Each search (``sweep.search``) brackets and bisects on single probes' verdicts, and each
probe is a short window of a queue. Near capacity the requests over the latency bound come
in rare bursts (one queue excursion every few minutes at ResNet50's time scale with
p99 <= 1 s), so most windows at the true capacity see none: a single probe's verdict flips
where a *typical window* meets the SLO, which is above where the long run meets it (+6-9%
on the stand-in queues, ``bench/search:spread``). Counting every probe's requests together
estimates the long-run fraction instead.

Model: probe i at rate r_i had k_i of n_i requests over the bound (errors and timeouts
count as over), the counts divided by the probe's measured inflation (``sweep.probe``: the
clustering of its exceedances), and the fraction over rises with rate as

    logit f(r) = logit(1 - p) + b (log r - log c)

where c is the capacity (the rate at which f = 1 - p) and b > 0 the steepness. (c, b) are
fitted by maximum likelihood on a grid, b held near what heavy-traffic queueing expects
for the SLO's bound (``slope_prior``) so that a few bursts cannot draw the line flat or
vertical; the dispersion phi (Pearson chi-square over K - 2
probes, at least 1) says how much more the probes scatter than that; the interval holds
every c whose profile deviance is within phi * t^2 (K - 2 degrees of freedom, 95% by
default), and its lower end is never above the highest PASS. With fewer than three probes
near the bracket, or no rise to fit, the searches' own crossings are used instead
(``method: searches``).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

import numpy as np

from sweep.search import Found, Outcome
from sweep.verdict import PASS

POOLED, SEARCHES = "pooled", "searches"  # how a capacity was estimated (run.json capacity.method)
OVERLOAD = 0.5  # probes with more over the bound than this are past the curve the model draws
SPAN = 1.25  # probes within this factor of the bracket's middle are pooled (wider: the logistic misfits)
EDGE = math.log(1.35)  # the crossing is looked for this far (log rate) beyond the pooled probes
STEP = 0.001  # grid step in log rate (0.1%)
SLOPES = np.exp(np.linspace(math.log(2.0), math.log(200.0), 61))  # steepness b, log-spaced
PRIOR_SD = 0.7  # of log b around what heavy-traffic queueing expects (slope_prior): a factor 2 either way
# two-sided Student t quantiles by degrees of freedom (1..30); normal beyond
_T = {0.95: (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
             2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
             2.045, 2.042)}


def t_quantile(dof: int, confidence: float = 0.95) -> float:
    """Two-sided Student t quantile (only 95% is tabled; other levels use the normal)."""
    if dof < 1:
        raise ValueError("need at least one degree of freedom")
    table = _T.get(round(confidence, 6))
    if table is None:
        return statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return table[dof - 1] if dof <= len(table) else 1.96


@dataclasses.dataclass(frozen=True)
class Crossing:
    """The pooled fit: where the over-bound fraction crosses 1 - p, and how sure."""

    point: float
    lo: float
    hi: float
    slope: float  # b
    dispersion: float  # phi
    probes: int  # K, the probes pooled


def pooled_crossing(outcomes: Sequence[Outcome], allowed: float, around: tuple[float, float],
                    confidence: float = 0.95, bound_s: float | None = None) -> Crossing | None:
    """The long-run crossing of ``allowed`` (1 - p) from the valid probes within SPAN of
    ``around`` (a bracket: highest PASS, lowest FAIL); None when they cannot say (fewer than
    three, or the best fit lies at the edge of what they span: no rise to fit)."""
    mid = math.sqrt(around[0] * around[1])
    near = [o for o in outcomes if o.valid and o.decision.requests > 0 and mid / SPAN <= o.rate <= mid * SPAN]
    top_pass = max((o.rate for o in near if o.decision.outcome == PASS), default=0.0)
    # deep overload above every PASS is past the curve; at or below a PASS it contradicts it (the
    # machine changed between probes) and stays, as a fraction of OVERLOAD, so the spread shows
    used = [o for o in near if o.fraction <= OVERLOAD or o.rate <= top_pass]
    if len(used) < 3 or len({o.rate for o in used}) < 2:
        return None
    x = np.log([o.rate for o in used])
    infl = np.array([_inflation(o) for o in used])
    requests = np.array([o.decision.requests for o in used], dtype=np.float64)
    n = requests / infl
    k = np.minimum(np.array([o.decision.over for o in used], dtype=np.float64), OVERLOAD * requests) / infl
    base = math.log(allowed / (1.0 - allowed))
    grid = np.arange(x.min() - EDGE, x.max() + EDGE + STEP / 2, STEP)
    eta = base + SLOPES[None, :, None] * (x[None, None, :] - grid[:, None, None])  # (c, b, probe)
    ll = (k * eta - n * np.logaddexp(0.0, eta)).sum(axis=2)
    if bound_s is not None:
        ll = ll - slope_prior(mid * bound_s)[None, :]
    profile = ll.max(axis=1)
    i = int(np.argmax(profile))
    if i in (0, grid.size - 1):
        return None
    b = float(SLOPES[int(np.argmax(ll[i]))])
    mu = 1.0 / (1.0 + np.exp(-(base + b * (x - grid[i]))))
    dof = len(used) - 2
    chi2 = float(((k - n * mu) ** 2 / np.maximum(n * mu * (1.0 - mu), 1e-12)).sum())
    phi = max(1.0, chi2 / dof) if dof >= 1 else 1.0
    limit = phi * t_quantile(max(1, dof), confidence) ** 2
    inside = 2.0 * (profile[i] - profile) <= limit
    left, right = i, i  # the connected run of grid points around the best one
    while left > 0 and inside[left - 1]:
        left -= 1
    while right < grid.size - 1 and inside[right + 1]:
        right += 1
    return Crossing(math.exp(grid[i]), math.exp(grid[left]), math.exp(grid[right]), b, phi, len(used))


def slope_prior(arrivals_per_bound: float) -> np.ndarray:
    """The penalty (negative log density) on each of SLOPES: log b normal around
    1.5 x the arrivals in one latency bound, sd PRIOR_SD. Heavy-traffic queueing (Kingman:
    P(wait > t) ~ exp(-2 (mu - lambda) t / (ca^2 + cs^2))) makes d log f / d log rate about
    lambda * t to 2 lambda * t near capacity; the stand-ins' fits land there (ResNet50's
    scale, 13 arrivals a bound: 17-24). Two or three probes can otherwise draw a line
    nearly flat or nearly vertical through the bursts, and put the crossing anywhere."""
    center = math.log(max(1.5 * arrivals_per_bound, SLOPES[0]))
    return 0.5 * ((np.log(SLOPES) - center) / PRIOR_SD) ** 2


def _inflation(o: Outcome) -> float:
    f = o.decision.inflation
    return f if f == f and f >= 1.0 else 1.0  # nan: not measured


@dataclasses.dataclass(frozen=True)
class Capacity:
    """A Config's capacity over its searches: a point and its 95% interval."""

    rps: float | None
    lo: float | None
    hi: float | None
    repeats: int  # searches that found a capacity
    points: tuple[float, ...]  # each search's own crossing
    errors: tuple[str, ...] = ()
    method: str = SEARCHES  # POOLED or SEARCHES
    slope: float | None = None
    dispersion: float | None = None
    probes: int = 0  # probes pooled

    @property
    def half_width(self) -> float | None:
        """The interval's wider side, relative to the point (None without a capacity)."""
        if self.rps is None or self.lo is None or self.hi is None or self.rps <= 0:
            return None
        return max(self.rps - self.lo, self.hi - self.rps) / self.rps

    def to_record(self) -> dict:
        return {"rps": self.rps, "lo": self.lo, "hi": self.hi, "repeats": self.repeats, "points": list(self.points),
                "errors": list(self.errors), "method": self.method, "slope": self.slope,
                "dispersion": self.dispersion, "probes": self.probes}


def capacity(found: Sequence[Found], outcomes: Sequence[Outcome], *, p: float = 0.99,
             confidence: float = 0.95, bound_s: float | None = None) -> Capacity:
    """A Config's capacity from its searches (``found``) and every probe they ran
    (``outcomes``): the pooled crossing, or the searches' own when it cannot say."""
    ok = [f for f in found if f.capacity is not None]
    errors = tuple(f.error for f in found if f.error)
    if not ok:
        return Capacity(None, None, None, 0, (), errors)
    points = tuple(f.capacity for f in ok)
    highest_pass = max(f.lo for f in ok)
    fit = pooled_crossing(outcomes, 1.0 - p, (min(f.lo for f in ok), max(f.hi for f in ok)), confidence, bound_s)
    if fit is None:
        lo = min(f.ci_lo for f in ok)
        hi = max(f.ci_hi for f in ok)
        return Capacity(statistics.median(points), lo, hi, len(ok), points, errors)
    return Capacity(fit.point, min(fit.lo, highest_pass), fit.hi, len(ok), points, errors, POOLED, fit.slope,
                    fit.dispersion, fit.probes)


def tied(a: Capacity, b: Capacity) -> bool:
    """Whether two capacities' intervals overlap (neither can be said to be higher)."""
    if None in (a.lo, a.hi, b.lo, b.hi):
        return False
    return a.lo <= b.hi and b.lo <= a.hi
