"""The capacity search against the simulated stand-in (truth by simulation): each
capacity within 3% of the truth, the ranking right, identical servers tied. Simulated
probes run the same sequential rule as real ones (sweep.probe.Watch), so many searches
cost seconds; tests/capacity_test.py runs the search against real stand-in servers."""

import itertools

import pytest

from sweep.probe import ProbeRules
from sweep.search import Outcome, combine, drive, search, tied
from tests.standin import simulated_probe
from tests.standin_server import truth_capacity


def _simulated_capacity(service_s, replicas, slo_ms, *, repeats, seed0, max_s=40):
    rules = ProbeRules(latency_ms=slo_ms, max_s=max_s)
    seeds = itertools.count(seed0)
    found = []
    for _ in range(repeats):
        probe = lambda rate: Outcome(rate, simulated_probe(rate, service_s, replicas, rules, next(seeds)))  # noqa: E731
        found.append(drive(search(0.9 * replicas / service_s), probe)[0])
    return combine(found)


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
