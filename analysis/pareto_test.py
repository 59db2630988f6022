import pandas as pd
import pytest

from analysis.pareto import eligible, pareto_front, recommend


def table(rows):
    cols = ["config_id", "name", "valid", "slo_rps", "cost_per_hour", "replicas", "nodes"]
    df = pd.DataFrame(rows, columns=cols)
    df["usd_per_million"] = df["cost_per_hour"] / (df["slo_rps"] * 3600) * 1e6
    return df


ROWS = [
    ("a", "small", True, 10.0, 1.0, 2, 2),
    ("b", "mid", True, 25.0, 2.0, 2, 2),
    ("c", "dominated", True, 20.0, 2.5, 1, 1),
    ("d", "big", True, 40.0, 4.0, 4, 4),
    ("x", "invalid-best", False, 100.0, 0.5, 1, 1),
    ("u", "unpriced", True, 100.0, float("nan"), 1, 1),
]


def test_eligible_excludes_invalid_unpriced_and_zero():
    rows = [*ROWS, ("z", "zero", True, 0.0, 0.1, 1, 1)]
    assert list(eligible(table(rows))["config_id"]) == ["a", "b", "c", "d"]


def test_pareto_front():
    assert pareto_front(table(ROWS)) == ["a", "b", "d"]


def test_equal_points_are_both_on_the_front():
    t = table([("a", "a", True, 10.0, 1.0, 1, 1), ("b", "b", True, 10.0, 1.0, 1, 1)])
    assert pareto_front(t) == ["a", "b"]


def test_cheapest_as_measured():
    rec = recommend(table(ROWS), 24.0, slo_text="s")
    # b serves 25 with 2 replicas at 2.0/h; a needs 5 replicas (5 x 0.5 = 2.5/h); d needs 3 (3.0/h)
    assert (rec.config_id, rec.replicas, rec.scaled) == ("b", 2, False)
    assert rec.margin == pytest.approx(1 / 24)
    assert "b" in rec.text and "+4%" in rec.text


def test_scaling_a_config_down_or_up_in_replicas():
    rec = recommend(table(ROWS), 5.0, slo_text="s")
    assert (rec.config_id, rec.replicas, rec.nodes, rec.scaled) == ("a", 1, 1, True)
    assert rec.cost_per_hour == pytest.approx(0.5)
    rec = recommend(table(ROWS), 60.0, slo_text="s")
    # a: 12 replicas (6.0/h), b: 5 replicas (5.0/h), d: 6 replicas (6.0/h)
    assert (rec.config_id, rec.replicas) == ("b", 5)
    assert "linearly" in rec.text


def test_invalid_is_never_recommended_even_when_cheapest_and_fastest():
    for target in (None, 1.0, 50.0, 500.0):
        assert recommend(table(ROWS), target, slo_text="s").config_id != "x"


def test_none_eligible_is_a_plain_statement():
    rec = recommend(table([ROWS[4], ROWS[5]]), 10.0, slo_text="p99 <= 1 s")
    assert rec.config_id is None and rec.text.startswith("No configuration can be recommended")


def test_without_target_best_value():
    rec = recommend(table(ROWS), None, slo_text="s")
    assert rec.config_id == "b"  # lowest USD per million requests among eligible


def test_bad_target():
    with pytest.raises(ValueError):
        recommend(table(ROWS), 0.0, slo_text="s")


def test_target_sized_from_the_capacity_lower_bound_when_there_is_one():
    t = table([("s", "searched", True, 30.0, 1.0, 2, 2), ("r", "ramped", True, 30.0, 1.0, 2, 2)])
    t["capacity_lo"] = [24.0, float("nan")]
    t["method"] = ["search", "ramp"]
    # s: 12 req/s per replica at its lower bound -> 3 replicas for 30; r: 15 per replica -> as measured
    rec = recommend(t, 30.0, slo_text="s")
    assert (rec.config_id, rec.replicas, rec.from_lower_bound) == ("r", 2, False)
    assert "lower end" not in rec.text
    rec = recommend(t[t["config_id"] == "s"], 30.0, slo_text="s")
    assert (rec.replicas, rec.from_lower_bound, rec.capacity_rps) == (3, True, pytest.approx(36.0))
    assert "sized from the lower end of its 95% CI, 24.0 req/s for 2 replica(s); point estimate 30.0" in rec.text


def test_without_target_intervals_switch_to_capacity_with_ties():
    t = table([("a", "a", True, 30.0, 1.0, 1, 1), ("b", "b", True, 29.0, 1.0, 1, 1),
               ("c", "cheap", True, 10.0, 0.2, 1, 1)])
    t["capacity_lo"], t["capacity_hi"] = [29.0, 28.0, 9.0], [31.0, 30.0, 11.0]
    rec = recommend(t, None, slo_text="s")
    # the best value per million is c, but with intervals the question is the highest capacity (ties: cheapest)
    assert rec.config_id == "a" and set(rec.tied) == {"a", "b"} and "tied within noise" in rec.text
