import math

import pandas as pd
import pytest

from analysis.ties import capacity_text, choose, margin, names, overlaps, tied_with_best

NAN = float("nan")


def table(rows):
    """rows: (config_id, name, slo_rps, lo, hi, cost_per_hour)."""
    df = pd.DataFrame(rows, columns=["config_id", "name", "slo_rps", "capacity_lo", "capacity_hi", "cost_per_hour"])
    df["usd_per_million"] = df["cost_per_hour"] / (df["slo_rps"] * 3600) * 1e6
    return df


def test_overlaps_shares_a_point_and_needs_both():
    assert overlaps((1.0, 2.0), (2.0, 3.0)) and overlaps((1.0, 4.0), (2.0, 3.0))
    assert not overlaps((1.0, 1.9), (2.0, 3.0))
    assert not overlaps(None, (2.0, 3.0)) and not overlaps((1.0, 2.0), None)


def test_tied_with_best_is_relative_to_the_highest_capacity():
    t = table([("a", "a", 30.0, 29.0, 31.0, 1.0),  # best
               ("b", "b", 28.5, 27.5, 29.5, 1.0),  # overlaps a
               ("c", "c", 27.0, 26.0, 28.0, 1.0),  # overlaps b, not a: not tied with the best
               ("r", "ramp", 29.9, NAN, NAN, 1.0)])  # no interval: never tied
    assert list(tied_with_best(t)) == [True, True, False, False]


def test_without_intervals_nothing_is_tied():
    t = table([("a", "a", 30.0, NAN, NAN, 1.0), ("b", "b", 30.0, NAN, NAN, 1.0)])
    assert not tied_with_best(t).any()
    assert not tied_with_best(t.iloc[0:0]).any()


def test_margin_combines_relative_half_widths_in_quadrature():
    t = table([("a", "a", 30.0, 29.4, 30.6, 1.0), ("b", "b", 25.0, 24.0, 26.0, 1.0)])
    diff, pm = margin(t.iloc[0], t.iloc[1])
    # ratio 1.2; half-widths 0.6/30 = 2% and 1/25 = 4%; 1.2 * sqrt(0.02^2 + 0.04^2) = 5.37%
    assert diff == pytest.approx(0.2)
    assert pm == pytest.approx(1.2 * math.sqrt(0.02**2 + 0.04**2))


def test_capacity_text_and_names():
    t = table([("a", "a", 30.12, 29.41, 30.83, 1.0), ("r", "r", 20.0, NAN, NAN, 1.0)])
    assert capacity_text(t.iloc[0]) == "30.1 req/s (95% CI 29.4–30.8)"
    assert capacity_text(t.iloc[1]) == "20.0 req/s (ramp: no interval)"
    assert names(["a"]) == "a" and names(["a", "b"]) == "a and b" and names(["a", "b", "c"]) == "a, b and c"


def test_untied_winner_states_its_margin_and_cost():
    t = table([("c-1", "cpu1x2", 30.1, 29.4, 30.8, 1.0), ("c-2", "cpu2x1", 26.0, 25.5, 26.5, 1.0)])
    winner, tied, text = choose(t, "p99 <= 1000 ms")
    assert winner["config_id"] == "c-1" and tied == ("c-1",)
    # 30.1 / 26.0 = 1.158; 1.158 * sqrt((0.7/30.1)^2 + (0.5/26.0)^2) = 3.5%
    assert text.startswith("cpu1x2 (c-1) serves 30.1 req/s (95% CI 29.4–30.8) within the SLO (p99 <= 1000 ms), "
                           "16% ± 3% more than cpu2x1 (26.0 req/s, 95% CI 25.5–26.5) at the same cost;")
    assert "tied" not in text


def test_untied_at_different_costs_says_both_costs():
    t = table([("a", "big", 40.0, 39.0, 41.0, 2.0), ("b", "small", 20.0, 19.5, 20.5, 1.0)])
    _, _, text = choose(t, "s")
    # ratio 2; half-widths 1/40 = 0.5/20 = 2.5%; 2 * sqrt(2) * 2.5% = 7.1%
    assert "100% ± 7% more than small" in text and "at 2.0000 vs 1.0000 USD/h" in text


def test_tied_at_the_same_cost_per_hour_says_only_the_point_estimate_separates_them():
    # same USD/h, overlapping intervals: b has the lower point, so it costs more per request, within noise
    t = table([("b", "cpu1x2-batch", 29.8, 29.0, 31.0, 1.0), ("a", "cpu1x2", 30.1, 29.4, 30.8, 1.0),
               ("c", "cpu2x1", 25.0, 24.0, 26.0, 1.0)])
    winner, tied, text = choose(t, "s")
    assert winner["config_id"] == "a" and set(tied) == {"a", "b"}
    assert ("cpu1x2 and cpu1x2-batch are tied within noise (their 95% CIs overlap); they cost the same "
            "per hour (1.0000 USD/h), so only their capacity point estimates, which differ within noise, separate "
            "them; cpu1x2 is chosen by its higher point estimate.") in text


def test_tied_at_different_costs_shows_enough_digits_to_tell_them_apart():
    # USD/1M: a 1e6 / (30.1 * 3600) = 9.2284; b 1.01e6 / (30.3 * 3600) = 9.2593: equal at 1 decimal, not 2
    t = table([("a", "one", 30.1, 29.0, 31.0, 1.0), ("b", "two", 30.3, 29.4, 30.8, 1.01)])
    winner, _, text = choose(t, "s")
    assert winner["config_id"] == "a" and "costs less per million requests (9.23 vs 9.26 USD)" in text
    # 1e6 / (482 * 3600) = 0.5763 vs 1.002e6 / (482.5 * 3600) = 0.5768: alike at 2 decimals, not at 3
    t = table([("a", "one", 482.0, 470.0, 490.0, 1.0), ("b", "two", 482.5, 475.0, 488.0, 1.002)])
    winner, _, text = choose(t, "s")
    assert winner["config_id"] == "a" and "costs less per million requests (0.576 vs 0.577 USD)" in text


def test_tied_and_cheaper_per_hour_wins_even_with_a_lower_point():
    t = table([("a", "fast", 30.1, 29.0, 31.0, 2.0), ("b", "thrifty", 29.5, 28.5, 30.5, 1.0)])
    winner, _, text = choose(t, "s")
    assert winner["config_id"] == "b" and "thrifty is chosen because it costs less per million" in text


def test_tied_at_the_same_cost_per_million_is_chosen_by_the_point_estimate():
    # twice the rate at twice the cost: the same USD per million; a's wide interval overlaps b's
    t = table([("a", "one", 30.0, 29.0, 61.0, 1.0), ("b", "two", 60.0, 58.0, 62.0, 2.0)])
    winner, _, text = choose(t, "s")
    assert winner["config_id"] == "b"
    assert "they cost the same per million requests (9.26 USD); two is chosen by its higher capacity point" in text


def test_the_only_configuration():
    _, _, text = choose(table([("a", "one", 30.0, 29.0, 31.0, 1.0)]), "s")
    assert "the only configuration that can be recommended" in text
