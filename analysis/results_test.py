import json
import shutil

import pytest

from analysis.errors import ResultsError
from analysis.results import load_results, load_run, parse_error_classes
from analysis.testdata.make_fixtures import FIXTURE_SWEEP, Second, write_run
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH


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


# ---- the capacity search (run.json method "search", probes.csv) ----

@pytest.fixture
def search_sweep(tmp_path):
    dest = tmp_path / "search"
    shutil.copytree(FIXTURE_SEARCH, dest)
    return dest


def search_config(sweep):
    return sorted(p for p in sweep.iterdir() if p.is_dir())[0]


def edit_run(path, **changes):
    rec = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            rec.pop(k, None)
        else:
            rec[k] = v
    path.write_text(json.dumps(rec))
    return rec


def test_search_config_loads_without_series_or_logs():
    res = load_results(FIXTURE_SEARCH)
    assert res.sweep_id == "fixture-search" and len(res.runs) == 3
    for r in res.runs:
        assert r.method == "search" and r.is_search and r.valid
        assert r.series.empty and r.latency_log is None and r.uncorrected_log is None
        assert not (r.dir / "series.csv").exists()
        assert len(r.probes) == r.record["probes"] == 5
        assert set(r.probes["verdict"]) <= {"PASS", "FAIL"}
        assert r.capacity["lo"] <= r.capacity["rps"] <= r.capacity["hi"]
        assert r.best_pass["dir"] in set(r.probes["dir"])
        # probe directories are ordinary run directories
        assert load_run(r.dir / r.best_pass["dir"]).method == "ramp"


def test_ramp_method_key_and_no_key_are_the_same(sweep):
    path = first_run(sweep) / "run.json"
    edit_run(path, method="ramp")
    assert load_run(first_run(sweep)).method == "ramp"


def test_unknown_method_is_rejected(sweep):
    path = first_run(sweep) / "run.json"
    edit_run(path, method="guess")
    with pytest.raises(ResultsError, match=r"unknown method 'guess' \(this reader understands search, ramp\)") as e:
        load_results(sweep)
    assert str(path) in str(e.value)


def test_a_ramp_still_needs_its_series_even_next_to_searches(search_sweep):
    shutil.copytree(first_run(FIXTURE_SWEEP), search_sweep / "ramp")
    (search_sweep / "ramp" / "series.csv").unlink()
    with pytest.raises(ResultsError, match=r"ramp/series.csv: file missing"):
        load_results(search_sweep)


def test_search_needs_probes_csv_with_its_schema_line(search_sweep):
    path = search_config(search_sweep) / "probes.csv"
    path.write_text(path.read_text().replace("servesweep.probes/1", "servesweep.probes/2", 1))
    with pytest.raises(ResultsError, match=r"probes.csv: unknown schema line '# servesweep.probes/2'"):
        load_results(search_sweep)
    path.write_text("# servesweep.probes/1\nconfig,repeat,rate\n")
    with pytest.raises(ResultsError, match="missing columns probe"):
        load_results(search_sweep)
    path.unlink()
    with pytest.raises(ResultsError, match=r"probes.csv: file missing"):
        load_results(search_sweep)


def test_search_needs_a_capacity_block(search_sweep):
    path = search_config(search_sweep) / "run.json"
    rec = edit_run(path, capacity=None)
    with pytest.raises(ResultsError, match="missing keys capacity"):
        load_results(search_sweep)
    edit_run(path, capacity={"rps": "fast", "lo": 1.0, "hi": 2.0})
    with pytest.raises(ResultsError, match="'capacity' needs numbers"):
        load_results(search_sweep)
    # no capacity found: nulls are allowed (the run is then invalid, said by its validity)
    edit_run(path, capacity={"rps": None, "lo": None, "hi": None, "errors": ["no PASS within 3 probes"]},
             validity={"valid": False, "reasons": ["repeat 1: no PASS within 3 probes"]})
    run = load_run(path.parent)
    assert run.capacity["rps"] is None and not run.valid and "no PASS" in run.reasons[0]
    assert "profile" not in rec  # a search's run.json has no profile; none is required


def test_search_totals_are_summed_from_probes_when_absent(search_sweep):
    d = search_config(search_sweep)
    path = d / "probes.csv"
    lines = path.read_text().splitlines()
    cols = lines[1].split(",")
    row = lines[2].split(",")
    row[cols.index("errors")] = "4"
    row[cols.index("error_classes")] = "http_503:3|timeout:1"
    lines[2] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")
    edit_run(d / "run.json", totals=None)
    run = load_run(d)
    requests = int(run.probes["requests"].sum())
    assert run.totals == {"ok": requests - 4, "errors": 4, "error_classes": {"http_503": 3, "timeout": 1}}


def test_a_search_dir_without_run_json_is_named(search_sweep):
    d = search_config(search_sweep)
    (d / "run.json").unlink()  # e.g. the sweep crashed mid-search: probes.csv is there
    with pytest.raises(ResultsError, match=r"run.json: file missing \(the directory holds other result files\)"):
        load_results(search_sweep)
