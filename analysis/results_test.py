import json
import shutil

import pytest

from analysis.errors import ResultsError
from analysis.results import load_results, load_run, parse_error_classes
from analysis.testdata.make_fixtures import FIXTURE_SWEEP, Second, write_run


@pytest.fixture
def sweep(tmp_path):
    dest = tmp_path / "sweep"
    shutil.copytree(FIXTURE_SWEEP, dest)
    return dest


def first_run(sweep):
    return sorted(p for p in sweep.iterdir() if p.is_dir())[0]


def test_fixture_sweep_loads():
    res = load_results(FIXTURE_SWEEP)
    assert res.sweep_id == "fixture-seed-shapes"
    assert len(res.runs) == 5
    assert [r.valid for r in res.runs].count(False) == 1
    for r in res.runs:
        assert r.id == r.dir.name and r.uncorrected_log is not None
        assert list(r.series["t_s"]) == list(range(1, 46))


def test_single_run_directory(sweep):
    res = load_results(first_run(sweep))
    assert len(res.runs) == 1 and res.sweep is None


@pytest.mark.parametrize("name", ["run.json", "series.csv", "latency.hlog"])
def test_missing_file_is_named(sweep, name):
    run_dir = first_run(sweep)
    (run_dir / name).unlink()
    with pytest.raises(ResultsError) as e:
        load_results(sweep)
    assert str(run_dir / name) in str(e.value) and "missing" in str(e.value)


def test_unknown_run_schema_is_named(sweep):
    path = first_run(sweep) / "run.json"
    rec = json.loads(path.read_text())
    rec["schema"] = "servesweep.run/2"
    path.write_text(json.dumps(rec))
    with pytest.raises(ResultsError, match=r"unknown schema 'servesweep.run/2'") as e:
        load_results(sweep)
    assert str(path) in str(e.value)


def test_unknown_series_schema_is_named(sweep):
    path = first_run(sweep) / "series.csv"
    path.write_text(path.read_text().replace("servesweep.series/1", "servesweep.series/9", 1))
    with pytest.raises(ResultsError, match=r"servesweep\.series/9") as e:
        load_results(sweep)
    assert str(path) in str(e.value)


def test_unknown_sweep_schema_is_named(sweep):
    path = sweep / "sweep.json"
    path.write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(ResultsError, match="unknown schema 'other/1'") as e:
        load_results(sweep)
    assert str(path) in str(e.value)


def test_bad_json_and_missing_keys(sweep):
    path = first_run(sweep) / "run.json"
    path.write_text("{not json")
    with pytest.raises(ResultsError, match="not readable JSON"):
        load_results(sweep)
    path.write_text(json.dumps({"schema": "servesweep.run/1"}))
    with pytest.raises(ResultsError, match="missing keys config, profile"):
        load_results(sweep)


def test_missing_series_columns(tmp_path):
    write_run(tmp_path / "r", [Second(t, 1, 1, [10.0]) for t in range(1, 4)], config=None)
    path = tmp_path / "r" / "series.csv"
    path.write_text("# servesweep.series/1\nt_s,ok\n1,1\n")
    with pytest.raises(ResultsError, match="missing columns target_rps"):
        load_run(tmp_path / "r")


def test_empty_and_stray_directories(tmp_path):
    with pytest.raises(ResultsError, match="no runs found"):
        load_results(tmp_path)
    with pytest.raises(ResultsError, match="results directory missing"):
        load_results(tmp_path / "absent")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "series.csv").write_text("")
    with pytest.raises(ResultsError, match=r"x/run.json: file missing"):
        load_results(tmp_path)


def test_bare_run_uses_directory_name_and_incomplete_is_invalid(tmp_path):
    write_run(tmp_path / "bare", [Second(t, 1, 1, [10.0]) for t in range(1, 4)], config=None, complete=False)
    run = load_run(tmp_path / "bare")
    assert run.id == "bare" and run.name == "bare"
    assert not run.valid and any("incomplete" in r for r in run.reasons)


def test_parse_error_classes():
    assert parse_error_classes("http_503:3|timeout:1") == {"http_503": 3, "timeout": 1}
    assert parse_error_classes("") == {}
