import json
import shutil

import pytest

from analysis.analyze import analyze
from analysis.testdata.make_fixtures import FIXTURE_SWEEP
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
