"""The capacity search: bracket, then bisect geometrically, on probe verdicts. Pure logic.

``search(guess, rules)`` is a generator: it yields the next rate to probe and is sent
that probe's ``Outcome``; it returns the ``Found`` capacity. The caller owns the probing,
so one search can run against real servers, interleaved with other Configs' searches,
or against a simulation in a test.

- Bracket: probe the first guess (a closed-loop saturation estimate of the raw capacity),
  then step by ``step`` up after a PASS or down after a FAIL until both are seen; a
  second step the same way doubles or halves (the guess was far off), unless the probe
  was marginal (undecided at its longest, so near the boundary).
- Bisect: the geometric middle of the highest PASS below the lowest FAIL, until
  FAIL / PASS <= 1 + ``resolution``.
- Capacity: the rate where the over-bound fraction crosses 1 - p (``crossing``: a line
  of logit(fraction) against log(rate) through the probes near the bracket), kept within
  the bracket; its interval is [highest PASS, lowest FAIL], so the lower end is
  always a rate the evidence passed.
- An invalid probe (the generator fell behind) is repeated, at most ``max_invalid``
  times in a row; then the search gives up and says why.

A Config's capacity over its searches pools all their probes (``sweep.estimate``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Generator, Sequence

import numpy as np

from sweep.probe import Decision
from sweep.verdict import FAIL, PASS


@dataclasses.dataclass(frozen=True)
class SearchRules:
    resolution: float = 0.03  # stop when lowest FAIL / highest PASS <= 1 + resolution
    step: float = 1.25  # bracketing factor from the first guess
    max_probes: int = 14  # valid probes per search
    max_invalid: int = 2  # invalid probes in a row before the search gives up
    p: float = 0.99  # the SLO's quantile (for the interpolation)

    def __post_init__(self) -> None:
        if not 0.0 < self.resolution < 1.0 or self.step <= 1.0 + self.resolution:
            raise ValueError("need 0 < resolution < 1 and step > 1 + resolution")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a probe gave the search."""

    rate: float
    decision: Decision
    valid: bool = True
    reason: str = ""  # why invalid

    @property
    def fraction(self) -> float:
        d = self.decision
        return d.over / d.requests if d.requests else 1.0


@dataclasses.dataclass(frozen=True)
class Found:
    """One search's answer."""

    capacity: float | None  # None: the search failed (``error``)
    lo: float  # highest PASS (0.0 if none)
    hi: float  # lowest FAIL (inf if none)
    ci_lo: float  # the capacity's interval: the crossing's, widened to hold [lo, hi]
    ci_hi: float
    probes: int
    converged: bool  # FAIL / PASS <= 1 + resolution
    error: str | None = None


NEAR = 1.5  # probes within this factor of the final bracket inform the crossing


def crossing(outcomes: Sequence[Outcome], lo: float, hi: float, allowed: float,
             z: float = 1.96) -> tuple[float, float, float]:
    """(point, low, high): where the over-bound fraction crosses ``allowed``.

    A weighted least-squares line of logit(fraction) against log(rate) through the
    probes near the bracket [lo, hi] (each weighted by its binomial information,
    n f (1 - f) / inflation), solved for ``allowed`` and kept within the bracket; its
    interval (delta method, ``z`` standard errors) is widened to hold the bracket. The
    bracket's geometric middle and the bracket itself when the probes cannot say.
    """
    mid = math.sqrt(lo * hi)
    near = [o for o in outcomes if o.valid and o.decision.requests > 0 and lo / NEAR <= o.rate <= hi * NEAR]
    if len({o.rate for o in near}) < 2:
        return mid, lo, hi
    x, y, w = [], [], []
    for o in near:
        n = o.decision.requests
        f = min(max(o.fraction, 0.5 / n), 1.0 - 0.5 / n)
        infl = o.decision.inflation
        infl = infl if infl == infl and infl >= 1.0 else 1.0  # nan: not measured
        x.append(math.log(o.rate))
        y.append(math.log(f / (1.0 - f)))
        w.append(n * f * (1.0 - f) / infl)
    xs, ys, ws = np.array(x), np.array(y), np.array(w)
    sw = float(ws.sum())
    mx, my = float(ws @ xs) / sw, float(ws @ ys) / sw
    sxx = float(ws @ (xs - mx) ** 2)
    sxy = float(ws @ ((xs - mx) * (ys - my)))
    if sxx <= 0 or sxy <= 0:  # flat or falling: no crossing to find
        return mid, lo, hi
    slope = sxy / sxx
    at = mx + (math.log(allowed / (1.0 - allowed)) - my) / slope
    se = math.sqrt(1.0 / sw + (at - mx) ** 2 / sxx) / slope
    # in log space, and never beyond the probes near the bracket: a nearly flat line would
    # put the crossing (and its interval) anywhere, e**1000 included
    floor, ceiling = math.log(lo / NEAR), math.log(hi * NEAR)

    def rate(log_rate: float) -> float:
        return math.exp(min(max(log_rate, floor), ceiling))

    return min(max(rate(at), lo), hi), min(lo, rate(at - z * se)), max(hi, rate(at + z * se))


def search(guess: float, rules: SearchRules = SearchRules()) -> Generator[float, Outcome, Found]:
    """Yields rates to probe; send each probe's Outcome; returns the Found capacity."""
    if not guess > 0:
        raise ValueError("the first guess must be a positive rate")
    lo: Outcome | None = None  # highest PASS below the lowest FAIL
    hi: Outcome | None = None  # lowest FAIL
    seen: list[Outcome] = []
    rate, valid, invalid = guess, 0, 0
    while valid < rules.max_probes:
        outcome = yield rate
        if not outcome.valid:
            invalid += 1
            if invalid > rules.max_invalid:
                why = f"{invalid} invalid probes in a row at {rate:.3g} req/s: {outcome.reason}"
                return _failed(lo, hi, valid, why)
            continue
        invalid, valid = 0, valid + 1
        seen.append(outcome)
        if outcome.decision.outcome == PASS:
            lo = outcome
        elif outcome.decision.outcome == FAIL:
            hi = outcome
        else:
            raise ValueError("a probe handed to the search must be decided")
        if lo is not None and hi is not None and hi.rate / lo.rate <= 1.0 + rules.resolution:
            break
        # a second step the same way doubles or halves, unless this probe was marginal
        # (undecided at its longest): then the boundary is near, and a double would land
        # far past it, to be bisected back over many probes
        far = valid >= 2 and not outcome.decision.marginal
        factor = max(rules.step, 2.0) if far else rules.step
        if hi is None:
            rate = lo.rate * factor
        elif lo is None:
            rate = hi.rate / factor
        else:
            rate = math.sqrt(lo.rate * hi.rate)
    converged = lo is not None and hi is not None and hi.rate / lo.rate <= 1.0 + rules.resolution
    if lo is None or hi is None:
        return _failed(lo, hi, valid, f"no {'PASS' if lo is None else 'FAIL'} within {valid} probes")
    point, ci_lo, ci_hi = crossing(seen, lo.rate, hi.rate, 1.0 - rules.p)
    return Found(point, lo.rate, hi.rate, ci_lo, ci_hi, valid, converged)


def drive(gen: Generator[float, Outcome, Found], probe: Callable[[float], Outcome]) -> tuple[Found, list[float]]:
    """Runs a search to its end with ``probe(rate) -> Outcome`` (one Config, nothing
    interleaved: a simulation, a test); returns what it found and the rates probed."""
    rates = [next(gen)]
    try:
        while True:
            rates.append(gen.send(probe(rates[-1])))
    except StopIteration as stop:
        return stop.value, rates


def _failed(lo: Outcome | None, hi: Outcome | None, probes: int, error: str) -> Found:
    low, high = lo.rate if lo else 0.0, hi.rate if hi else math.inf
    return Found(None, low, high, low, high, probes, False, error)
