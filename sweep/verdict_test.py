import math

import numpy as np
import pytest

from sweep import verdict
from sweep.verdict import FAIL, PASS, UNDECIDED


@pytest.mark.parametrize("t, minimum", [(0, 459), (1, 662), (10, 2010), (100, 12571), (1000, 107569)])
def test_min_requests_reproduces_mlperf_early_stopping(t, minimum):
    # MLPerf LoadGen, Server scenario, p99 at 99% confidence (loadgen/early_stopping.cc)
    assert verdict.min_requests(t, p=0.99, confidence=0.99) == minimum
    # and judge agrees at the boundary: one request fewer cannot pass
    assert verdict.judge(minimum, t, p=0.99, confidence=0.99).outcome == PASS
    assert verdict.judge(minimum - 1, t, p=0.99, confidence=0.99).outcome != PASS


def test_binom_cdf_small_cases_written_out():
    # P(X <= 0; 3, 0.5) = 1/8; P(X <= 1; 3, 0.5) = 4/8; P(X <= 0; 459, 0.01) = 0.99**459
    assert verdict.binom_cdf(0, 3, 0.5) == pytest.approx(0.125)
    assert verdict.binom_cdf(1, 3, 0.5) == pytest.approx(0.5)
    assert verdict.binom_cdf(0, 459, 0.01) == pytest.approx(0.99 ** 459)
    assert verdict.binom_cdf(3, 3, 0.7) == 1.0 and verdict.binom_cdf(-1, 3, 0.7) == 0.0


def test_bounds_bracket_the_fraction():
    # 0 of n: the upper bound solves (1 - u)**n = 1 - c
    assert verdict.upper_bound(0, 100, 0.95) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-6)
    assert verdict.lower_bound(0, 100, 0.95) == 0.0
    lo, hi = verdict.lower_bound(50, 1000, 0.95), verdict.upper_bound(50, 1000, 0.95)
    assert lo < 0.05 < hi and hi - lo < 0.04


@pytest.mark.parametrize("requests, over, outcome", [
    (459, 0, PASS),          # at 95% (not MLPerf's 99%), none over passes from 299 requests:
    (299, 0, PASS),          # 0.99**299 = 0.0495 <= 0.05
    (298, 0, UNDECIDED),     # 0.99**298 = 0.0500 > 0.05
    (5000, 20, PASS),        # 0.4% over, bound well under 1%
    (5000, 50, UNDECIDED),   # exactly 1%: cannot tell
    (5000, 80, FAIL),        # 1.6% over: lower bound above 1%
    (100, 10, FAIL),         # 10% over of 100: clearly failing already
    (0, 0, UNDECIDED),       # nothing measured
])
def test_verdict_table_p99_at_95_percent(requests, over, outcome):
    assert verdict.judge(requests, over, p=0.99, confidence=0.95).outcome == outcome


def test_correlated_evidence_is_worth_less():
    # 5000 requests, 0.4% over: PASS as independent trials; counted as 10x fewer (an
    # inflation of 10, a queue's correlated latencies) it can no longer pass
    assert verdict.judge(5000, 20).outcome == PASS
    weaker = verdict.judge(5000, 20, inflation_factor=10.0)
    assert weaker.outcome == UNDECIDED and weaker.upper > 0.01
    # and FAIL is reached later too: 1.6% over of 5000 fails alone, not at inflation 10
    assert verdict.judge(5000, 80).outcome == FAIL
    assert verdict.judge(5000, 80, inflation_factor=10.0).outcome == UNDECIDED


def test_inflation_is_one_for_independent_requests_and_large_for_runs_of_them():
    rng = np.random.default_rng(7)
    iid = (rng.random(20_000) < 0.05).astype(float)
    assert verdict.inflation(iid, block=200) == pytest.approx(1.0, abs=0.35)
    # the same fraction over, but in runs of 50 consecutive requests (a slow spell):
    # a block mean varies like 1/50 as many trials, so the inflation is about 50
    runs = np.repeat((rng.random(400) < 0.05).astype(float), 50)
    assert 20 < verdict.inflation(runs, block=500) < 80
    assert verdict.inflation(np.zeros(5000), block=100) == 1.0  # nothing over: nothing to estimate
    assert verdict.inflation(iid[:500], block=100) == 1.0  # fewer than 10 blocks


def test_bad_arguments_are_refused():
    for kw in ({"p": 1.0}, {"confidence": 0.0}):
        with pytest.raises(ValueError):
            verdict.judge(10, 0, **kw)
    with pytest.raises(ValueError):
        verdict.judge(10, 11)
    assert math.isclose(verdict.judge(200, 2).fraction, 0.01)


def test_a_backlog_growing_linearly_is_rising_and_a_steady_one_is_not():
    rng = np.random.default_rng(3)
    seconds = np.arange(30)
    # above capacity: arrivals exceed service by 2 req/s, so the backlog grows ~2/s
    growing = 2.0 * seconds + rng.normal(0, 3, seconds.size)
    steady = 8.0 + rng.normal(0, 3, seconds.size)  # a stable queue of ~8 in flight
    up, flat = verdict.backlog_trend(growing), verdict.backlog_trend(steady)
    assert up.rising and up.slope == pytest.approx(2.0, abs=0.3)
    assert not flat.rising and abs(flat.slope) < 0.3
    assert not verdict.backlog_trend(np.array([1.0, 50.0])).rising  # too short to judge


def test_fail_is_not_reached_sooner_by_rounding_the_inflated_counts():
    # 13 of 496 over at inflation 2.5: 198.4 effective requests. Rounding down to 198
    # would make the fraction look larger than it is; FAIL must use 199 (the cautious side)
    v = verdict.judge(496, 13, inflation_factor=2.5)
    assert v.lower == pytest.approx(verdict.lower_bound(5, 199, 0.95))
