import math

import pytest

from sweep.probe import TREND_ERROR_SHARE, ProbeRules, Second, decide
from sweep.verdict import FAIL, PASS, UNDECIDED


def _seconds(n: int, per_s: int, over_every: int = 0, in_flight=lambda t: 3, mean_ms=lambda t: 10.0):
    """``n`` seconds of ``per_s`` requests, one in ``over_every`` over the bound (spread
    evenly, so independent-looking), with the given backlog and mean latency."""
    out = []
    for t in range(1, n + 1):
        over = per_s // over_every if over_every else 0
        out.append(Second(t, per_s, over, 0, in_flight(t), mean_ms(t), (over, 2 * over, 4 * over, 8 * over)))
    return out


def test_looks_grow_geometrically_and_end_at_max():
    rules = ProbeRules(latency_ms=100, min_s=13, max_s=40)
    assert rules.looks == (13, 17, 21, 26, 32, 40)
    assert rules.look_confidence == pytest.approx(1 - 0.05 / 6)
    assert rules.trend_confidence == pytest.approx(1 - 0.05 / 6 * TREND_ERROR_SHARE)
    with pytest.raises(ValueError):
        ProbeRules(latency_ms=100, transient_s=13, min_s=13)


def test_no_verdict_before_the_correlation_can_be_measured():
    rules = ProbeRules(latency_ms=100, transient_s=3, min_s=13)
    d = decide(_seconds(12, 500), rules)  # 9 seconds after the transient: < 10 blocks
    assert d.outcome == UNDECIDED and math.isnan(d.inflation)


@pytest.mark.parametrize(("per_s", "over_every", "expected"), [
    (100, 0, PASS),  # 1000 after the transient, none over
    (100, 10, FAIL),  # 10% over
    (30, 0, UNDECIDED),  # 300 requests, none over: not enough at the look's confidence
    (100, 100, UNDECIDED),  # exactly at the allowed 1%
])
def test_verdict_table(per_s, over_every, expected):
    rules = ProbeRules(latency_ms=100)
    assert decide(_seconds(13, per_s, over_every), rules).outcome == expected


def test_errors_are_bounded_by_the_slos_error_rate():
    rules = ProbeRules(latency_ms=100, error_rate=0.01)
    seconds = [Second(t, 100, 5, 5, 2, 10.0, (5, 5, 5, 5)) for t in range(1, 14)]  # 5% errors
    d = decide(seconds, rules)
    assert d.outcome == FAIL and "over-bound" in d.reason  # errors count as over, too


def test_undecided_at_max_is_decided_on_the_point_estimate_and_marked():
    rules = ProbeRules(latency_ms=100, min_s=13, max_s=13)
    d = decide(_seconds(13, 20), rules, final=True)  # 200 requests, none over: too few to be sure
    assert d.outcome == PASS and d.marginal


def test_a_rising_backlog_fails_while_the_fraction_over_is_still_fine():
    rules = ProbeRules(latency_ms=1000, max_s=40)
    seconds = _seconds(21, 100, in_flight=lambda t: 5 * t, mean_ms=lambda t: 50.0 * t)
    d = decide(seconds, rules)
    assert d.outcome == FAIL and "backlog" in d.reason and d.over == 0


def test_a_wandering_backlog_below_capacity_does_not_fail():
    rules = ProbeRules(latency_ms=1000, max_s=40)
    seconds = _seconds(21, 100, in_flight=lambda t: 3 + t % 2, mean_ms=lambda t: 10.0 + t % 3)
    assert decide(seconds, rules).outcome == PASS
