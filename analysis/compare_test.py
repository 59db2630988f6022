import json
import shutil

import pytest

from analysis.analyze import analyze
from analysis.compare import compare, compare_sweeps, format_comparison, read_comparison, write_comparison
from analysis.errors import ResultsError
from analysis.testdata.make_fixtures import FIXTURE_SWEEP
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH
from formats.slo import Slo


def test_compare_with_itself_has_zero_deltas():
    a = analyze(FIXTURE_SWEEP)
    df = compare(a, a)
    assert len(df) == 5 and (df["presence"] == "both").all()
    assert (df["slo_rps_delta"] == 0).all()
    assert (df["valid_before"] == df["valid_after"]).all()


def test_compare_sweeps_uses_one_slo_for_both(tmp_path):
    df = compare_sweeps(FIXTURE_SWEEP, FIXTURE_SWEEP, slo_p99_ms=500.0)
    strict = analyze(FIXTURE_SWEEP, slo=Slo(p99_ms=500.0)).table.set_index("config_id")["slo_rps"]
    assert (df.set_index("config_id")["slo_rps_after"] == strict[df["config_id"]].to_numpy()).all()


def test_compare_added_removed_and_changed(tmp_path):
    after = tmp_path / "after"
    shutil.copytree(FIXTURE_SWEEP, after)
    shutil.rmtree(after / "c-0a2f4b6c8d")
    shutil.copytree(FIXTURE_SWEEP / "c-1b3e5d7f9a", after / "c-new")
    rec = json.loads((after / "c-new" / "run.json").read_text())
    rec["config"]["id"], rec["config"]["name"] = "c-new", "new"
    (after / "c-new" / "run.json").write_text(json.dumps(rec))
    run = after / "c-2c4a6e8b0d" / "run.json"
    rec = json.loads(run.read_text())
    rec["config"]["shape"]["nodes"] = 4  # twice the nodes: twice the cost
    run.write_text(json.dumps(rec))
    df = compare(analyze(FIXTURE_SWEEP), analyze(after)).set_index("config_id")
    assert df.loc["c-0a2f4b6c8d", "presence"] == "before_only"
    assert df.loc["c-new", "presence"] == "after_only" and df.loc["c-new", "name"] == "new"
    assert df.loc["c-2c4a6e8b0d", "cost_per_hour_change"] == pytest.approx(1.0)


def test_comparison_file_round_trips_and_carries_its_schema(tmp_path):
    df = compare_sweeps(FIXTURE_SWEEP, FIXTURE_SWEEP)
    path = tmp_path / "compare.csv"
    write_comparison(df, path)
    back = read_comparison(path)
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    assert back["config_id"].tolist() == df["config_id"].tolist()
    assert back["slo_rps_after"].tolist() == pytest.approx(df["slo_rps_after"].tolist(), nan_ok=True)


def test_comparison_without_its_schema_line_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "compare.csv"
    compare_sweeps(FIXTURE_SWEEP, FIXTURE_SWEEP).to_csv(path, index=False)  # the old, unversioned file
    with pytest.raises(ResultsError, match=r"compare\.csv: unknown schema line"):
        read_comparison(path)


def test_searched_capacities_compare_by_their_intervals(tmp_path):
    after = tmp_path / "after"
    shutil.copytree(FIXTURE_SEARCH, after)
    moved = sorted(p for p in after.iterdir() if (p / "run.json").is_file())[0]
    rec = json.loads((moved / "run.json").read_text())
    cap = rec["capacity"]
    cap["rps"], cap["lo"], cap["hi"] = cap["rps"] * 2, cap["hi"] * 1.5, cap["hi"] * 3  # clear of the old interval
    rec["capacity"] = cap
    (moved / "run.json").write_text(json.dumps(rec))
    df = compare(analyze(FIXTURE_SEARCH), analyze(after)).set_index("config_id")
    assert not df.loc[moved.name, "within_noise"]
    others = df.drop(index=moved.name)
    assert others["within_noise"].astype(bool).all()
    text = format_comparison(df.reset_index())
    assert "95% CI (req/s)" in text and "changed" in text and "within noise" in text


def test_runs_without_intervals_compare_by_p99():
    a = analyze(FIXTURE_SWEEP)
    df = compare(a, a)
    assert df["within_noise"].isna().all()
    assert "p99 over run (ms)" in format_comparison(df)
