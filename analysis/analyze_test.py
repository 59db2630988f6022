import json
import shutil

import pandas as pd
import pytest

from analysis.analyze import COLUMNS, analyze, method_label
from analysis.testdata.make_fixtures import FIXTURE_SWEEP
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH
from formats.slo import Slo


@pytest.fixture(scope="module")
def fixture_analysis():
    return analyze(FIXTURE_SWEEP, target_rps=20.0)


def test_table_joins_cost_and_throughput(fixture_analysis):
    t = fixture_analysis.table.set_index("name")
    assert len(t) == 5
    for name in ("e2-2-4x8-inter4", "e2-4-8x4-inter4", "e2-8-16x2-inter4"):
        assert round(t.loc[name, "cost_per_day"], 2) == 11.15
    assert round(t.loc["e2-8-64x2-inter4", "cost_per_day"], 2) == 18.21
    row = t.loc["e2-8-16x2-inter4"]
    assert row["slo_rps"] > 0 and row["p99_ms_at_slo"] <= 1000.0
    assert row["usd_per_million"] == pytest.approx(row["cost_per_hour"] / (row["slo_rps"] * 3600) * 1e6)
    assert row["requests_per_usd"] == pytest.approx(1e6 / row["usd_per_million"])
    # the whole-run percentiles come from the HDR log and are ordered
    assert row["p50_ms_run"] <= row["p90_ms_run"] <= row["p99_ms_run"] <= row["p99_9_ms_run"] <= row["max_ms_run"]


def test_invalid_run_is_shown_flagged_and_not_recommended(fixture_analysis):
    t = fixture_analysis.table
    bad = t[~t["valid"]]
    assert list(bad["name"]) == ["e2-8-64x2-inter4-batch"]
    assert "send lag" in bad["validity_reasons"].iloc[0]
    # it has the highest SLO throughput of all, yet is neither recommended nor on the front
    assert bad["slo_rps"].iloc[0] == t["slo_rps"].max()
    assert not bad["recommended"].iloc[0] and not bad["pareto"].iloc[0]
    assert fixture_analysis.recommendation.config_id != bad["config_id"].iloc[0]
    assert t["recommended"].sum() == 1


def test_stricter_slo_never_raises_throughput():
    loose = analyze(FIXTURE_SWEEP, slo=Slo(p99_ms=2000.0)).table.set_index("config_id")["slo_rps"]
    strict = analyze(FIXTURE_SWEEP, slo=Slo(p99_ms=500.0)).table.set_index("config_id")["slo_rps"][loose.index]
    assert (strict <= loose).all() and (strict < loose).any()


def test_unpriced_family_is_shown_not_recommended(tmp_path):
    dest = tmp_path / "sweep"
    shutil.copytree(FIXTURE_SWEEP, dest)
    path = dest / "c-2c4a6e8b0d" / "run.json"
    rec = json.loads(path.read_text())
    rec["config"]["shape"]["pricing"] = "n2-standard"
    path.write_text(json.dumps(rec))
    a = analyze(dest, target_rps=20.0)
    row = a.table.set_index("config_id").loc["c-2c4a6e8b0d"]
    assert row["cost_per_hour"] != row["cost_per_hour"]  # NaN
    assert "n2-standard" in row["note"] and not row["recommended"]


def test_configs_without_results_are_listed(tmp_path):
    dest = tmp_path / "sweep"
    shutil.copytree(FIXTURE_SWEEP, dest)
    shutil.rmtree(dest / "c-0a2f4b6c8d")
    a = analyze(dest)
    assert a.unmeasured == ("c-0a2f4b6c8d",) and len(a.table) == 4
    assert analyze(FIXTURE_SWEEP).unmeasured == ()


# ---- the capacity search ----


@pytest.fixture(scope="module")
def search_analysis():
    return analyze(FIXTURE_SEARCH)


def test_search_table_has_the_capacity_columns(search_analysis):
    t = search_analysis.table.set_index("name")
    for col in ("method", "capacity_rps", "capacity_lo", "capacity_hi", "tied_with_best", "probes"):
        assert col in COLUMNS and col in t.columns
    for name, run in ((r.name, r) for r in search_analysis.results.runs):
        row, cap = t.loc[name], run.capacity
        assert row["method"] == "search" and row["probes"] == 5
        assert (row["slo_rps"], row["capacity_rps"], row["capacity_lo"], row["capacity_hi"]) == (
            cap["rps"], cap["rps"], cap["lo"], cap["hi"])
        # latency "at the SLO" is the highest passing probe's; run-wide percentiles are not given
        assert row["p99_ms_at_slo"] == run.best_pass["p99_ms"] and row["p50_ms_at_slo"] == run.best_pass["p50_ms"]
        assert row["p99_9_ms_at_slo"] >= row["p99_ms_at_slo"]  # from that probe's own latency.hlog
        assert pd.isna(row["p99_ms_run"])
        assert row["usd_per_million"] == pytest.approx(row["cost_per_hour"] / (cap["rps"] * 3600) * 1e6)


def test_ties_with_the_best_capacity(search_analysis):
    t = search_analysis.table.set_index("name")
    # cpu1x2 [29.4, 31.5] is the best; cpu1x2-batch [27.7, 29.7] overlaps it; cpu2x1 [24.5, 26.3] does not
    assert dict(t["tied_with_best"]) == {"cpu1x2": True, "cpu1x2-batch": True, "cpu2x1": False}


def test_tied_recommendation_says_so_in_words(search_analysis):
    rec = search_analysis.recommendation
    assert rec.name == "cpu1x2" and set(rec.tied) == {"s-1a2b3c4d5e", "s-2b3c4d5e6f"}
    assert rec.text.startswith("cpu1x2 (s-1a2b3c4d5e) serves 30.5 req/s (95% CI 29.4–31.5) within the SLO "
                               "(p99 <= 1000 ms, errors <= 1%).")
    assert ("cpu1x2 and cpu1x2-batch are tied within noise (their 95% CIs overlap); they cost the same per hour "
            "(0.0580 USD/h), so only their capacity point estimates, which differ within noise, separate them; "
            "cpu1x2 is chosen by its higher point estimate.") in rec.text


def test_untied_recommendation_states_the_margin(tmp_path):
    dest = tmp_path / "search"
    shutil.copytree(FIXTURE_SEARCH, dest)
    shutil.rmtree(dest / "s-2b3c4d5e6f")  # cpu1x2-batch: the tie goes
    a = analyze(dest)
    assert not a.table["tied_with_best"].iloc[1:].any()
    # 30.475 / 25.396 = 1.20; half-widths 1.067/30.475 = 3.5% and 0.889/25.396 = 3.5%: 1.2 * 4.95% = 5.9%
    assert ("cpu1x2 (s-1a2b3c4d5e) serves 30.5 req/s (95% CI 29.4–31.5) within the SLO (p99 <= 1000 ms, "
            "errors <= 1%), 20% ± 6% more than cpu2x1 (25.4 req/s, 95% CI 24.5–26.3) at the same cost; "
            "0.53 USD per million requests at capacity.") in a.recommendation.text
    assert "tied" not in a.recommendation.text


def test_target_is_sized_from_the_lower_bound(search_analysis):
    a = analyze(FIXTURE_SEARCH, target_rps=60.0)
    rec = a.recommendation
    # cpu1x2: 29.408 / 2 = 14.70 req/s per replica at its lower bound -> 5 replicas (73.5 req/s) on 5 nodes
    # of 1 vCPU; by its point estimate (15.24 per replica) 4 would do. cpu2x1: 24.507 -> 3 replicas of 2 vCPU.
    assert (rec.name, rec.replicas, rec.from_lower_bound) == ("cpu1x2", 5, True)
    assert rec.capacity_rps == pytest.approx(29.408 / 2 * 5)
    assert "sized from the lower end of its 95% CI, 29.4 req/s for 2 replica(s); point estimate 30.5" in rec.text


def test_a_sweep_mixing_methods(tmp_path):
    dest = tmp_path / "mixed"
    shutil.copytree(FIXTURE_SEARCH, dest)
    shutil.copytree(FIXTURE_SWEEP / "c-2c4a6e8b0d", dest / "c-2c4a6e8b0d")
    t = analyze(dest).table.set_index("config_id")
    ramp = t.loc["c-2c4a6e8b0d"]
    assert ramp["method"] == "ramp" and ramp["capacity_rps"] == ramp["slo_rps"] > 0
    assert pd.isna(ramp["capacity_lo"]) and pd.isna(ramp["capacity_hi"]) and pd.isna(ramp["probes"])
    assert not ramp["tied_with_best"]
    assert method_label("ramp") == "the seed's method (ramp)"


def test_a_search_under_another_slo_has_no_capacity_within_it():
    a = analyze(FIXTURE_SEARCH, slo=Slo(p99_ms=500.0))
    t = a.table
    assert (t["slo_rps"] == 0).all() and (t["capacity_rps"] > 0).all()
    assert t["note"].str.contains("capacity searched for p99 <= 1000 ms").all()
    assert a.recommendation.config_id is None
    assert "cpu1x2: no capacity within the SLO" in a.recommendation.text
