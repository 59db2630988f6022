"""Several worker processes split one schedule; their results merge into one run."""

from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from tests.loadgen_helpers import hlog_counts, read_series, running_server


def test_two_workers_merge_into_one_result(tmp_path):
    with running_server("--delay-ms", "3") as (url, _):
        options = RunOptions(
            targets=(url + "/v1/models/a:predict", url + "/v1/models/b:predict"),
            profile=Profile(kind="constant", rate=200.0, duration_s=2.0),
            payload="b64", max_in_flight=64, timeout_s=5.0, workers=2)
        rec = run(options, str(tmp_path)).record
    assert rec["complete"] is True
    assert rec["options"]["workers"] == 2
    t = rec["totals"]
    assert t["scheduled"] == t["sent"] == t["ok"] == 400 and t["errors"] == 0
    assert rec["latency_ms"]["corrected"]["count"] == 400
    # both workers' send timing, summed: every send is accounted for once
    assert rec["options"]["transport"] == "fast" and rec["scheduler"]["send_timing"] == "auto"
    assert sum(rec["scheduler"]["sends"].values()) == 400
    rows = read_series(tmp_path / "series.csv")
    assert [int(r["t_s"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r["scheduled"]) for r in rows[:2]] == [200, 200]
    assert sum(int(r["ok"]) for r in rows) == 400
    assert sum(hlog_counts(tmp_path / "latency.hlog")) == 400
