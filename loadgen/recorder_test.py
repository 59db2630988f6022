import numpy as np
import pytest

from loadgen import recorder
from loadgen.recorder import Interval, Recorder


def _values(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    # spread over many buckets: 1 us .. ~30 s
    return np.rint(np.exp(rng.uniform(0, np.log(3e7), n))).astype(np.int64)


def test_load_values_matches_record_value_exactly():
    values = _values()
    fast, slow = recorder.new_histogram(), recorder.new_histogram()
    assert recorder.load_values(fast, values) == 0
    for v in values.tolist():
        assert slow.record_value(v)
    assert fast.equals(slow)
    assert fast.get_total_count() == slow.get_total_count() == values.size
    assert fast.get_max_value() == slow.get_max_value()
    assert fast.get_min_value() == slow.get_min_value()


def test_percentiles_match_hdrh():
    hist = recorder.new_histogram()
    recorder.load_values(hist, _values(5000, seed=1))
    pcts = (0.1, 50.0, 90.0, 99.0, 99.9, 100.0)
    ours = recorder.percentiles(hist, pcts)
    for p in pcts:
        assert ours[p] == hist.get_value_at_percentile(p), p


def test_out_of_range_values_are_counted_not_lost_silently():
    hist = recorder.new_histogram()
    oor = recorder.load_values(hist, np.array([5, -3, 10**12, 61_000_000_000, 42]))
    assert oor == 3
    assert hist.get_total_count() == 2


def test_recorder_interval_counts_and_resets():
    rec = Recorder()
    rec.add_scheduled(np.array([0.1, 0.5, 0.9, 1.2]))
    rec.on_send(0.1, 0.1002)
    rec.on_send(0.5, 0.5001)
    rec.on_ok(0.1, 0.1002, 0.1102)
    rec.on_error("http_503")
    rec.on_error("dropped")
    first = rec.take_interval(1, in_flight=1)
    assert (first.scheduled, first.sent, first.ok, first.error_count) == (3, 2, 1, 2)
    assert dict(first.errors) == {"http_503": 1, "dropped": 1}
    assert first.hists["corrected"].get_total_count() == 1
    # 10.2 ms from the intended send, 10.0 ms from the actual send (3 significant digits)
    assert abs(first.hists["corrected"].get_max_value() - 10200) <= 10
    assert abs(first.hists["uncorrected"].get_max_value() - 10000) <= 10
    assert first.hists["send_lag"].get_total_count() == 2
    second = rec.take_interval(2, in_flight=0)
    assert (second.scheduled, second.sent, second.ok, second.error_count) == (1, 0, 0, 0)
    assert second.hists["corrected"].get_total_count() == 0


def test_intervals_merge_losslessly_through_the_wire_format():
    a, b = Interval(3), Interval(3)
    va, vb = _values(3000, 2), _values(3000, 3)
    recorder.load_values(a.hists["corrected"], va)
    recorder.load_values(b.hists["corrected"], vb)
    a.sent, b.sent = 5, 7
    a.errors["timeout"] = 1
    b.errors["timeout"] = 2
    merged = Interval.from_wire(a.to_wire())
    merged.merge(Interval.from_wire(b.to_wire()))
    whole = recorder.new_histogram()
    recorder.load_values(whole, np.concatenate([va, vb]))
    assert merged.hists["corrected"].equals(whole)
    assert merged.sent == 12 and merged.errors["timeout"] == 3
    with pytest.raises(ValueError):
        merged.merge(Interval(4))


def test_summary_ms():
    hist = recorder.new_histogram()
    assert recorder.summary_ms(hist)["p99"] is None
    recorder.load_values(hist, np.arange(1000, 101000, 1000))  # 1..100 ms
    s = recorder.summary_ms(hist)
    assert s["count"] == 100
    assert s["p50"] == pytest.approx(50.0, rel=0.002)
    assert s["p99"] == pytest.approx(99.0, rel=0.002)
    assert s["max"] == pytest.approx(100.0, rel=0.002)
    assert s["mean"] == pytest.approx(50.5, rel=0.002)


def test_absorbing_in_pieces_equals_one_load():
    rec = Recorder()
    values = _values(3000, seed=4)
    for i, v in enumerate(values.tolist()):
        rec.on_ok(0.0, 0.0, v / 1e6)
        if i % 700 == 0:
            rec.absorb()
    interval = rec.take_interval(1, in_flight=0)
    whole = recorder.new_histogram()
    recorder.load_values(whole, values)
    assert interval.hists["corrected"].equals(whole)
    assert rec.take_interval(2, in_flight=0).hists["corrected"].get_total_count() == 0


def test_count_above_counts_values_beyond_the_threshold():
    hist = recorder.new_histogram()
    recorder.load_values(hist, np.array([10, 500, 999, 1000, 1001, 2000, 50_000], dtype=np.int64))
    assert recorder.count_above(hist, 1000) == 3  # 1 us buckets below 2048 us
    assert recorder.count_above(hist, 0) == 7
    assert recorder.count_above(hist, 60_000_000) == 0
    assert recorder.count_above(recorder.new_histogram(), 5) == 0
    big = recorder.new_histogram()
    recorder.load_values(big, np.array([1_000_000, 1_000_400, 1_002_000], dtype=np.int64))
    assert recorder.count_above(big, 1_000_000) == 1  # 1_000_400 shares 1 s's bucket (3 digits)


def test_mean_us_is_the_mean_at_the_histograms_precision():
    hist = recorder.new_histogram()
    values = np.array([100, 2_000, 35_000, 1_200_000, 1_200_000], dtype=np.int64)
    recorder.load_values(hist, values)
    assert recorder.mean_us(hist) == pytest.approx(values.mean(), rel=1e-3)
    assert recorder.mean_us(recorder.new_histogram()) is None
