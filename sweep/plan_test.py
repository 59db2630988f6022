import pytest

from sweep.estimate import Capacity
from sweep.plan import Eta, SearchOptions, expected_probes, fit_budget, plan_seconds


def test_expected_probes_follow_the_resolution():
    assert expected_probes(SearchOptions(resolution=0.03)) == 5  # 2 to bracket + 3 bisections of 1.25
    assert expected_probes(SearchOptions(resolution=0.10)) == 4


def test_budget_lowers_searches_then_resolution_then_probe_length_and_says_so():
    opts = SearchOptions(repeats=3, max_repeats=5)
    fits, nothing = fit_budget(4, opts, 10 * 3600)
    assert nothing == [] and fits == SearchOptions(repeats=3, max_repeats=5, budget_s=10 * 3600)
    fitted, given_up = fit_budget(4, opts, 40 * 60)  # 4 Configs x 3 searches x 5 probes x 34 s = 34 min
    assert (fitted.repeats, fitted.max_repeats) == (3, 3) and given_up == ["searches per Config up to 5 -> 3"]
    assert plan_seconds(4, fitted) <= 40 * 60 < plan_seconds(4, SearchOptions(repeats=3, max_repeats=4))
    fewer, words = fit_budget(4, opts, 20 * 60)
    assert (fewer.repeats, fewer.most_repeats) == (1, 1) and words == ["searches per Config up to 5 -> 1 "
                                                                        "(at least 3 -> 1)"]
    tight, words = fit_budget(4, opts, 4 * 60)
    assert tight.resolution == 0.10 and tight.max_probe_s == 20 and tight.budget_s == 4 * 60
    assert words[1:] == ["resolution 3% -> 5%", "resolution 5% -> 10%", "longest probe 40 s -> 30 s",
                         "longest probe 30 s -> 20 s"]


def test_more_searches_only_while_the_interval_is_wider_than_the_precision():
    opts = SearchOptions(repeats=2, max_repeats=4, precision=0.10)
    loose, tight = Capacity(100.0, 85.0, 112.0, 2, ()), Capacity(100.0, 93.0, 109.0, 2, ())
    assert opts.wants_more(tight, 1)  # fewer than repeats: always
    assert opts.wants_more(loose, 2) and opts.wants_more(loose, 3) and not opts.wants_more(loose, 4)
    assert not opts.wants_more(tight, 2)  # +-9% at most: precise enough
    assert not opts.wants_more(Capacity(None, None, None, 0, ()), 2)  # no capacity: more searches do not help
    exact = SearchOptions(repeats=2, max_repeats=4, precision=0.0)
    assert exact.most_repeats == 2 and not exact.wants_more(loose, 2)


def test_given_options_raise_the_most_searches_to_the_least():
    assert SearchOptions.given({"repeats": 6, "precision": None}) == SearchOptions(repeats=6, max_repeats=6)
    assert SearchOptions.given({"repeats": 1}) == SearchOptions(repeats=1, max_repeats=4)
    with pytest.raises(ValueError, match="max_repeats"):
        SearchOptions.given({"repeats": 3, "max_repeats": 2})


def test_bad_search_options_are_refused():
    for bad in ({"repeats": 0}, {"confidence": 1.0}, {"resolution": 0.3}, {"min_probe_s": 50},
                {"precision": 1.0}, {"repeats": 5}):
        with pytest.raises(ValueError):
            SearchOptions(**bad)


def test_eta_counts_the_probes_left_at_their_measured_cost():
    eta = Eta(searches=2, options=SearchOptions())
    before = eta.eta()
    d = eta.default_probe_s
    assert before == pytest.approx(2 * 5 * d)
    eta.probe((1, 1), 10.0)  # a first probe: it prices only the other search's first
    assert eta.eta() == pytest.approx(4 * d + (10.0 + 4 * d))
    eta.probe((1, 1), 40.0)  # a later probe prices the later ones
    assert eta.eta() == pytest.approx(3 * 40.0 + (10.0 + 4 * 40.0))
    eta.finish((1, 1))
    assert eta.eta() == pytest.approx(10.0 + 1 * 40.0)  # the finished search took 2 probes: so will the next
    eta.drop(1)  # the other search will not run after all
    assert eta.eta() == 0.0
