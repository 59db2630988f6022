import csv
import json

import numpy as np
import pytest
from hdrh.log import HistogramLogReader

from loadgen import recorder, results
from loadgen.recorder import Interval

HEADER = {"config": None, "server": {"kind": "external"}, "profile": {"duration_s": 2.0},
          "payload": {"kind": "b64", "bytes": 10, "sha256": "x"},
          "targets": ["http://127.0.0.1:1/v1/models/m:predict"],
          "options": {"max_in_flight": 8}}


def _interval(t, latencies_us, lag_us=(100,), **counts):
    iv = Interval(t, **counts)
    recorder.load_values(iv.hists["corrected"], np.array(latencies_us))
    recorder.load_values(iv.hists["uncorrected"], np.array(latencies_us) // 2)
    recorder.load_values(iv.hists["send_lag"], np.array(lag_us))
    return iv


def _read_series(path):
    with open(path) as f:
        assert f.readline() == "# servesweep.series/1\n"
        return list(csv.DictReader(f))


def test_files_follow_the_format(tmp_path):
    w = results.ResultsWriter(str(tmp_path), HEADER, 1_700_000_000.0)
    first = json.loads((tmp_path / "run.json").read_text())
    assert first["complete"] is False and first["validity"]["valid"] is False
    iv1 = _interval(1, [10_000] * 9 + [50_000], scheduled=10, sent=10, ok=10, in_flight=2)
    iv1.errors.update({"http_503": 2, "dropped": 1})
    w.write_interval(iv1, target_rps=10.0)
    w.write_interval(_interval(2, [20_000] * 10, scheduled=10, sent=10, ok=10), 10.0)
    w.write_interval(Interval(3), 0.0)
    rows = _read_series(tmp_path / "series.csv")
    assert list(rows[0]) == list(results.SERIES_COLUMNS)
    assert rows[0]["error_classes"] == "dropped:1|http_503:2"
    assert (rows[0]["errors"], rows[0]["dropped"], rows[0]["in_flight"]) == ("3", "1", "2")
    assert abs(float(rows[0]["p50_ms"]) - 10.0) < 0.01 and 49.9 < float(rows[0]["max_ms"]) < 50.1
    assert float(rows[0]["send_lag_p99_ms"]) == 0.1  # exact below 2048 us
    assert rows[2]["p50_ms"] == "" and rows[2]["send_lag_p99_ms"] == ""
    record = w.finish(ended_at_epoch=1_700_000_002.0, elapsed_s=2.0, complete=True,
                      max_send_lag_ms=5.0)
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk == record
    assert on_disk["schema"] == "servesweep.run/1"
    assert on_disk["started_at"] == "2023-11-14T22:13:20Z"
    assert on_disk["totals"] == {"scheduled": 20, "sent": 20, "ok": 20, "errors": 3,
                                 "error_classes": {"connect": 0, "dropped": 1,
                                                   "http_503": 2, "timeout": 0}}
    lat = on_disk["latency_ms"]["corrected"]
    assert lat["count"] == 20 and abs(lat["p50"] - 20.0) < 0.02 and 49.9 < lat["p99"] < 50.1
    assert on_disk["validity"] == {"valid": True, "reasons": [], "send_lag_bound_ms": 5.0,
                                   "send_lag_rule": "--max-send-lag 5 ms"}
    for name in ("latency.hlog", "latency_uncorrected.hlog"):
        text = (tmp_path / name).read_text()
        assert "#[servesweep.hlog/1]" in text and "#[StartTime: 1700000000.000" in text
        reader = HistogramLogReader(str(tmp_path / name), recorder.new_histogram())
        counts = []
        while (h := reader.get_next_interval_histogram()) is not None:
            counts.append(h.get_total_count())
        assert counts == [10, 10, 0]
        assert reader.get_start_time_sec() == 1_700_000_000.0


def test_files_exist_before_the_origin_is_stamped(tmp_path):
    # the caller makes the files (run.json synced) first, then chooses the origin
    w = results.ResultsWriter(str(tmp_path), HEADER)
    placeholder = json.loads((tmp_path / "run.json").read_text())
    assert placeholder["started_at"] is None and placeholder["complete"] is False
    w.start(1_700_000_000.0)
    w.write_interval(_interval(1, [10_000] * 5, scheduled=5, sent=5, ok=5), 5.0)
    record = w.finish(ended_at_epoch=1_700_000_001.0, elapsed_s=1.0, complete=True)
    assert record["started_at"] == "2023-11-14T22:13:20Z"
    reader = HistogramLogReader(str(tmp_path / "latency.hlog"), recorder.new_histogram())
    assert reader.get_next_interval_histogram().get_total_count() == 5
    assert reader.get_start_time_sec() == 1_700_000_000.0
    assert [r["t_s"] for r in _read_series(tmp_path / "series.csv")] == ["1"]


def test_judge_rules():
    totals = {"scheduled": 1000, "sent": 985, "error_classes": {"dropped": 10}}
    ok = dict(totals=totals, send_lag_p99_ms=1.0, send_lag_bound_ms=5.0,
              send_lag_rule="--max-send-lag 5 ms", complete=True,
              out_of_range={"latency": 0}, elapsed_s=10.0, duration_s=10.0)
    assert results.judge(**ok) == {"valid": True, "reasons": [], "send_lag_bound_ms": 5.0,
                                   "send_lag_rule": "--max-send-lag 5 ms"}
    lagging = results.judge(**{**ok, "send_lag_p99_ms": 7.5})
    assert not lagging["valid"]
    assert "send lag p99 7.50 ms exceeds 5 ms (--max-send-lag 5 ms)" in lagging["reasons"][0]
    behind = results.judge(**{**ok, "totals": {**totals, "sent": 970}})
    assert not behind["valid"] and "missed the schedule by 2.0%" in behind["reasons"][0]
    early = results.judge(**{**ok, "complete": False, "elapsed_s": 4.0})
    assert "stopped early at 4.0 s of 10 s" in early["reasons"][0]
    lost = results.judge(**{**ok, "out_of_range": {"latency": 3}})
    assert "latency 3" in lost["reasons"][0]
    empty = results.judge(**{**ok, "totals": {"scheduled": 0, "sent": 0,
                                              "error_classes": {}}})
    assert not empty["valid"]
    unbounded = results.judge(**{**ok, "send_lag_p99_ms": 900.0, "send_lag_bound_ms": None})
    assert unbounded["valid"]  # nothing answered: no latency for the lag to distort


# The send-lag bound (docs/results-format.md, "The send-lag rule"): the user's override,
# else 5% of the SLO's latency bound, else 5% of the run's corrected p50.
@pytest.mark.parametrize("override, slo, p50, lag_p99, bound, valid", [
    (None, 1000.0, 300.0, 5.0, 50.0, True),   # ResNet50 beside a 1 s SLO: 5 ms is 0.5% of it
    (None, None, 2.0, 5.0, 0.1, False),       # the same lag beside a 2 ms p50: 250% of it
    (None, None, 20.0, 0.9, 1.0, True),       # 0.9 ms beside a 20 ms p50: 4.5%
    (None, None, 20.0, 1.1, 1.0, False),      # 1.1 ms: 5.5%
    (None, 40.0, 2.0, 1.9, 2.0, True),        # an SLO takes precedence over the p50
    (5.0, 1000.0, 300.0, 6.0, 5.0, False),    # --max-send-lag overrides both
    (5.0, None, 2.0, 4.0, 5.0, True),
    (None, None, None, 3.0, None, True),      # no latency measured: no bound
])
def test_send_lag_bound_table(override, slo, p50, lag_p99, bound, valid):
    got, rule = results.send_lag_bound(max_send_lag_ms=override, slo_latency_ms=slo,
                                       p50_ms=p50)
    assert got == pytest.approx(bound) if bound is not None else got is None
    verdict = results.judge(totals={"scheduled": 10, "sent": 10, "error_classes": {}},
                            send_lag_p99_ms=lag_p99, send_lag_bound_ms=got, send_lag_rule=rule,
                            complete=True, out_of_range={}, elapsed_s=1.0, duration_s=1.0)
    assert verdict["valid"] is valid
    if not valid:
        assert rule in verdict["reasons"][0]


def test_extra_reasons_make_the_run_invalid(tmp_path):
    w = results.ResultsWriter(str(tmp_path), HEADER, 1_700_000_000.0)
    w.write_interval(_interval(1, [1000], scheduled=1, sent=1, ok=1), 1.0)
    record = w.finish(ended_at_epoch=1_700_000_001.0, elapsed_s=1.0, complete=True,
                      max_send_lag_ms=5.0, extra_reasons=["worker 1 died"])
    assert record["validity"]["valid"] is False
    assert record["validity"]["reasons"] == ["worker 1 died"]
