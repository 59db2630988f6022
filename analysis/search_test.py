import json
import shutil

import pytest

from analysis.results import load_run
from analysis.search import run_slo, search_answer
from analysis.testdata.make_search_fixtures import FIXTURE_SEARCH
from formats.slo import Slo


@pytest.fixture
def config_dir(tmp_path):
    src = sorted(p for p in FIXTURE_SEARCH.iterdir() if p.is_dir())[0]
    dest = tmp_path / src.name
    shutil.copytree(src, dest)
    return dest


def edit(d, **changes):
    path = d / "run.json"
    rec = json.loads(path.read_text())
    rec.update(changes)
    path.write_text(json.dumps(rec))


def test_answer_is_the_capacity_block_and_the_best_pass(config_dir):
    run = load_run(config_dir)
    f = search_answer(run, Slo())
    cap = run.capacity
    assert (f.rps, f.lo, f.hi, f.measured_rps, f.probes) == (cap["rps"], cap["lo"], cap["hi"], cap["rps"], 5)
    assert f.best_pass == run.best_pass and not f.why_none
    assert f.best_histogram.get_total_count() > 0 and f.best_uncorrected.get_total_count() > 0
    assert run_slo(run) == Slo(p99_ms=1000.0, error_rate=0.01)


def test_missing_probe_logs_only_lose_the_spectrum(config_dir):
    run = load_run(config_dir)
    shutil.rmtree(config_dir / run.best_pass["dir"])
    f = search_answer(load_run(config_dir), Slo())
    assert f.best_histogram is None and f.rps == run.capacity["rps"]


def test_no_capacity_found_says_why(config_dir):
    edit(config_dir, capacity={"rps": None, "lo": None, "hi": None, "errors": ["no FAIL within 14 probes"]})
    f = search_answer(load_run(config_dir), Slo())
    assert f.rps == 0.0 and f.lo is None and f.measured_rps is None
    assert f.why_none == "the search found no capacity (no FAIL within 14 probes)"


def test_another_slo_keeps_the_measurement_but_not_the_claim(config_dir):
    f = search_answer(load_run(config_dir), Slo(p99_ms=1000.0, error_rate=0.001))
    assert f.rps == 0.0 and f.measured_rps > 0 and f.lo is not None
    assert "capacity searched for p99 <= 1000 ms, errors <= 1%, not this report's" in f.why_none
    edit(config_dir, slo=None)  # an SLO not recorded cannot be checked: taken as the report's
    assert search_answer(load_run(config_dir), Slo(p99_ms=500.0)).rps > 0
