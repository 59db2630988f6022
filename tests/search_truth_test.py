"""The capacity search against the simulated stand-in (truth by simulation): each
capacity within 3% of the truth, the ranking right, identical servers tied, and the 95%
interval holding the truth as often as it says. Simulated probes run the same sequential
rule as real ones (sweep.probe.Watch), so many searches cost seconds;
tests/capacity_test.py runs the search against real stand-in servers."""

import itertools

import pytest

from sweep.estimate import tied
from sweep.plan import SearchOptions
from sweep.probe import ProbeRules
from tests.standin import simulated_capacity
from tests.standin_server import truth_capacity


def _simulated_capacity(service_s, replicas, slo_ms, *, repeats, seed0, max_s=40, precision=0.0):
    rules = ProbeRules(latency_ms=slo_ms, max_s=max_s)
    options = SearchOptions(repeats=repeats, max_repeats=max(repeats, 4), precision=precision)
    guesses = itertools.repeat(0.9 * replicas / service_s)
    return simulated_capacity(service_s, replicas, rules, options, guesses, itertools.count(seed0))


SETTINGS = {  # name -> (service_s, replicas, slo_ms)
    "one-5ms": (0.005, 1, 50.0),
    "two-4ms": (0.004, 2, 40.0),
    "two-4ms-twin": (0.004, 2, 40.0),
    "two-2ms": (0.002, 2, 20.0),
}


@pytest.fixture(scope="module")
def simulated():
    return {name: _simulated_capacity(*s, repeats=3, seed0=1000 * i) for i, (name, s) in enumerate(SETTINGS.items())}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_capacity_is_within_3_percent_of_the_truth(simulated, name):
    service, replicas, slo_ms = SETTINGS[name]
    truth = truth_capacity(service, replicas, slo_ms / 1000.0)
    cap = simulated[name]
    assert cap.rps == pytest.approx(truth, rel=0.03)


def test_the_ranking_is_right_and_identical_servers_tie(simulated):
    assert tied(simulated["two-4ms"], simulated["two-4ms-twin"])
    ranked = sorted(["one-5ms", "two-4ms", "two-2ms"], key=lambda n: -simulated[n].rps)
    assert ranked == ["two-2ms", "two-4ms", "one-5ms"]
    assert not tied(simulated["two-2ms"], simulated["two-4ms"])


def test_the_interval_holds_the_truth_as_often_as_it_says():
    # 30 independent Configs (two searches each, as a sweep's least): a 95% interval that
    # held the truth less than 25 times in 30 would be over-confident (P <= 1.6% at 95%)
    service, replicas, slo_ms = SETTINGS["one-5ms"]
    truth = truth_capacity(service, replicas, slo_ms / 1000.0)
    caps = [_simulated_capacity(service, replicas, slo_ms, repeats=2, seed0=50_000 + 1000 * k) for k in range(30)]
    held = sum(c.lo <= truth <= c.hi for c in caps)
    assert held >= 25, [(round(c.lo, 2), round(c.hi, 2)) for c in caps]
    assert all(c.method == "pooled" for c in caps)
