import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from analysis import drift
from analysis.results import SEARCH, Run

T0 = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def _run(tmp_path, config_id, costs, *, start_min=0, backend="local", seconds=40.0):
    """A search run whose k-th probe (every 2 minutes) cost ``costs[k]`` CPU-s per request."""
    rows = []
    for k, cost in enumerate(costs):
        rel = f"probes/1-{k + 1}"
        d = tmp_path / config_id / rel
        d.mkdir(parents=True)
        ok, wall = 400, 40.0
        at = T0 + timedelta(minutes=start_min + 2 * k)
        (d / "run.json").write_text(json.dumps({
            "started_at": at.isoformat().replace("+00:00", "Z"), "totals": {"ok": ok},
            "host_cpu": {"others": cost * ok / wall, "wall_s": wall}}))
        rows.append({"valid": 1, "dir": rel, "seconds": seconds})
    return Run(dir=tmp_path / config_id, record={"config": {"id": config_id, "backend": backend}},
               series=pd.DataFrame(), latency_log=None, uncorrected_log=None, method=SEARCH,
               probes=pd.DataFrame(rows))


def test_a_steady_machine_reads_no_drift_whatever_each_config_costs(tmp_path):
    runs = [_run(tmp_path, "a", [0.10] * 6), _run(tmp_path, "b", [0.05] * 6, start_min=1)]
    d = drift.sweep_drift(runs)
    assert d.probes == 12 and d.change == pytest.approx(0.0) and not d.notable
    assert "stayed steady" in d.text() and "does not rule out" in d.text()


def test_servers_that_got_cheaper_per_request_are_reported_as_drift(tmp_path):
    # both Configs 25% costlier in the sweep's first part, as on a machine still settling
    runs = [_run(tmp_path, "a", [0.125, 0.125, 0.10, 0.10, 0.10, 0.10]),
            _run(tmp_path, "b", [0.0625, 0.0625, 0.05, 0.05, 0.05, 0.05], start_min=1)]
    d = drift.sweep_drift(runs)
    assert d.first / d.last == pytest.approx(1.25) and d.notable
    assert "fell 20%" in d.text() and "not in a steady state" in d.text()
    assert d.span_min == pytest.approx(11.0)


def test_only_local_long_valid_probes_with_their_files_count(tmp_path):
    assert drift.sweep_drift([_run(tmp_path, "k8s", [0.1] * 12, backend="cluster")]) is None
    assert drift.sweep_drift([_run(tmp_path / "s", "short", [0.1] * 12, seconds=13.0)]) is None
    run = _run(tmp_path / "gone", "c", [0.1] * 12)
    (run.dir / "probes/1-1/run.json").unlink()
    assert len(drift.cost_samples([run])) == 11


def test_two_sweeps_compare_by_the_servers_cost_per_request(tmp_path):
    before = [_run(tmp_path / "1", "a", [0.10] * 6), _run(tmp_path / "1", "b", [0.20] * 6)]
    after = [_run(tmp_path / "2", "a", [0.09] * 6), _run(tmp_path / "2", "b", [0.18] * 6),
             _run(tmp_path / "2", "new", [0.5] * 6)]  # only in one: not compared
    m = drift.machine_change(before, after)
    assert m.configs == 2 and m.change == pytest.approx(-0.10) and "not in the same state" in m.text()
    same = drift.machine_change(before, before)
    assert same.change == pytest.approx(0.0) and "about the same state" in same.text()
    assert drift.machine_change(before, []) is None
