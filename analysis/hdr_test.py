import pytest

from analysis import hdr
from analysis.errors import ResultsError
from analysis.results import load_run
from analysis.testdata.make_fixtures import Second, write_run


def test_intervals_line_up_with_series_seconds(tmp_path):
    write_run(tmp_path / "r", [Second(t, t, t, [float(t)] * t) for t in range(1, 11)], config=None)
    run = load_run(tmp_path / "r")
    intervals = hdr.read_log(run.latency_log)
    assert [iv.second for iv in intervals] == list(run.series["t_s"])
    assert [iv.start_s for iv in intervals] == list(range(0, 10))
    counts = {iv.second: iv.histogram.get_total_count() for iv in intervals}
    assert counts == dict(zip(run.series["t_s"], run.series["ok"], strict=True))


def test_merge_is_lossless_and_percentiles_are_exact_within_precision(tmp_path):
    # 1..1000 ms, one each, spread over 10 seconds
    seconds = [Second(t, 100, 100, [float(v) for v in range((t - 1) * 100 + 1, t * 100 + 1)]) for t in range(1, 11)]
    write_run(tmp_path / "r", seconds, config=None)
    merged = hdr.merge(iv.histogram for iv in hdr.read_log(tmp_path / "r" / "latency.hlog"))
    q = hdr.percentiles_ms(merged)
    assert q["count"] == 1000
    assert q["p50"] == pytest.approx(500.0, rel=2e-3)
    assert q["p99"] == pytest.approx(990.0, rel=2e-3)
    assert q["p99_9"] == pytest.approx(999.0, rel=2e-3)
    assert q["max"] == pytest.approx(1000.0, rel=2e-3)


def test_empty_histogram_percentiles_are_none():
    q = hdr.percentiles_ms(hdr.new_histogram())
    assert q["p99"] is None and q["count"] == 0
    assert hdr.spectrum_ms(hdr.new_histogram()) == ([], [])


def test_spectrum_is_monotonic_and_ends_at_max(tmp_path):
    h = hdr.new_histogram()
    for v in range(1, 5001):
        h.record_value(v * 1000)
    pcts, values = hdr.spectrum_ms(h)
    assert pcts == sorted(pcts) and values == sorted(values)
    assert values[-1] == pytest.approx(5000.0, rel=1e-3)


def test_unknown_hlog_schema_and_missing_header(tmp_path):
    write_run(tmp_path / "r", [Second(1, 1, 1, [1.0])], config=None, hlog_schema="servesweep.hlog/7")
    path = tmp_path / "r" / "latency.hlog"
    with pytest.raises(ResultsError, match=r"unknown schema 'servesweep\.hlog/7'") as e:
        hdr.read_log(path)
    assert str(path) in str(e.value)
    path.write_text("0.0,1.0,1.0,HISTFAAAA\n")
    with pytest.raises(ResultsError, match="not a servesweep latency log"):
        hdr.read_log(path)


def test_corrupt_interval_is_reported(tmp_path):
    write_run(tmp_path / "r", [Second(1, 1, 1, [1.0])], config=None)
    path = tmp_path / "r" / "latency.hlog"
    path.write_text(path.read_text() + "1.000000,1.000000,0.000000,HISTFAAAAnotbase64!!\n")
    with pytest.raises(ResultsError, match="corrupt interval 2"):
        hdr.read_log(path)
