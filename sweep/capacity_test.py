import pytest

from sweep.capacity import Eta, SearchOptions, add_totals, expected_probes, fit_budget, plan_seconds


def test_expected_probes_follow_the_resolution():
    assert expected_probes(SearchOptions(resolution=0.03)) == 5  # 2 to bracket + 3 bisections of 1.25
    assert expected_probes(SearchOptions(resolution=0.10)) == 4


def test_budget_lowers_repeats_then_resolution_then_probe_length_and_says_so():
    opts = SearchOptions(repeats=3)
    assert fit_budget(4, opts, 10 * 3600) == (opts, [])  # fits: nothing given up
    fitted, given_up = fit_budget(4, opts, 20 * 60)
    assert fitted.repeats == 1 and given_up[0] == "repeats 3 -> 1"
    assert plan_seconds(4, fitted) <= 20 * 60
    tight, words = fit_budget(4, opts, 4 * 60)
    assert tight.resolution == 0.10 and tight.max_probe_s == 20
    assert words == ["repeats 3 -> 1", "resolution 3% -> 5%", "resolution 5% -> 10%",
                     "longest probe 40 s -> 30 s", "longest probe 30 s -> 20 s"]


def test_bad_search_options_are_refused():
    for bad in ({"repeats": 0}, {"confidence": 1.0}, {"resolution": 0.3}, {"min_probe_s": 50}):
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


def test_totals_add_up_over_probes():
    into: dict = {}
    add_totals(into, {"scheduled": 10, "sent": 9, "ok": 8, "errors": 1, "error_classes": {"timeout": 1}})
    add_totals(into, {"scheduled": 5, "sent": 5, "ok": 5, "errors": 0, "error_classes": {"timeout": 0}})
    assert into == {"scheduled": 15, "sent": 14, "ok": 13, "errors": 1, "error_classes": {"timeout": 1}}
