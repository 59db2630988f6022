import itertools
import math

import pytest

from sweep.probe import Decision
from sweep.search import Outcome, SearchRules, crossing, drive, search
from sweep.verdict import FAIL, PASS


def _decision(outcome: str, requests: int = 1000, over: int = 0, inflation: float = 1.0, *,
              marginal: bool = False) -> Decision:
    return Decision(outcome, marginal, "", requests, over, 0, inflation, 0.0, 1.0, 0.0)


def _threshold(capacity: float):
    """A noiseless Config: PASS below ``capacity``, FAIL above, the fraction over rising through 1%."""
    def probe(rate):
        fraction = 0.01 * (rate / capacity) ** 20
        over = round(fraction * 10_000)
        return Outcome(rate, _decision(PASS if rate <= capacity else FAIL, 10_000, min(over, 10_000)))
    return probe


@pytest.mark.parametrize("guess", [10.0, 47.0, 80.0, 400.0])
def test_brackets_then_bisects_to_the_resolution(guess):
    found, rates = drive(search(guess, SearchRules(resolution=0.03)), _threshold(50.0))
    assert found.converged and found.lo <= 50.0 <= found.hi
    assert found.hi / found.lo <= 1.03
    assert found.ci_lo <= found.lo <= found.capacity <= found.hi <= found.ci_hi
    assert found.capacity == pytest.approx(50.0, rel=0.01)
    assert found.probes == len(rates) <= 12


@pytest.mark.parametrize("marginal, third", [(False, 100.0 / 1.25 / 2.0), (True, 100.0 / 1.25 ** 2)])
def test_a_second_step_down_halves_unless_the_probe_was_marginal(marginal, third):
    # two FAILs: the first decided, the second undecided at its longest when ``marginal``
    gen = search(100.0)
    assert next(gen) == 100.0
    assert gen.send(Outcome(100.0, _decision(FAIL, 300, 100))) == pytest.approx(80.0)
    assert gen.send(Outcome(80.0, _decision(FAIL, 500, 20, marginal=marginal))) == pytest.approx(third)


def test_an_invalid_probe_is_repeated_then_the_search_gives_up():
    calls = itertools.count()

    def flaky(rate):  # first probe invalid, then fine
        if next(calls) == 0:
            return Outcome(rate, _decision(PASS), valid=False, reason="send lag")
        return _threshold(50.0)(rate)

    found, rates = drive(search(40.0), flaky)
    assert rates[0] == rates[1] == 40.0 and found.capacity is not None
    never, _ = drive(search(40.0, SearchRules(max_invalid=2)),
                    lambda r: Outcome(r, _decision(PASS), valid=False, reason="send lag"))
    assert never.capacity is None and "3 invalid probes in a row" in never.error


def test_a_config_that_never_passes_has_no_capacity():
    found, _ = drive(search(40.0, SearchRules(max_probes=6)), lambda r: Outcome(r, _decision(FAIL, 100, 100)))
    assert found.capacity is None and found.lo == 0.0 and "no PASS" in found.error


def test_crossing_interpolates_between_the_probes():
    outs = [Outcome(90.0, _decision(PASS, 10_000, 50)), Outcome(110.0, _decision(FAIL, 10_000, 200))]
    point, lo, hi = crossing(outs, 90.0, 110.0, 0.01)
    assert 90.0 < point < 110.0 and lo <= 90.0 and hi >= 110.0
    one = crossing(outs[:1], 90.0, 110.0, 0.01)
    assert one == (math.sqrt(90.0 * 110.0), 90.0, 110.0)


def test_a_nearly_flat_crossing_stays_near_the_probes():
    # fractions that barely rise with rate (noise): the line crosses 1% absurdly far away
    outs = [Outcome(11.74, _decision(PASS, 500, 0, 30.0)), Outcome(12.26, _decision(FAIL, 300, 6, 30.0)),
            Outcome(11.99, _decision(FAIL, 200, 7, 30.0)), Outcome(6.0, _decision(PASS, 300, 0, 30.0))]
    point, lo, hi = crossing(outs, 11.74, 11.99, 0.01)
    assert 11.74 <= point <= 11.99
    assert 11.74 / 1.5 * (1 - 1e-9) <= lo <= 11.74 and 11.99 <= hi <= 11.99 * 1.5 * (1 + 1e-9)
