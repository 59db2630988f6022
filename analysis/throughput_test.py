import pytest

from analysis import hdr
from analysis.results import load_run
from analysis.testdata.make_fixtures import Second, write_run
from analysis.throughput import sustained_throughput
from formats.slo import Slo


def run_of(tmp_path, seconds, *, warmup_s=0.0, duration=None):
    write_run(tmp_path / "run", seconds, config=None, warmup_s=warmup_s)
    run = load_run(tmp_path / "run")
    seconds_h = hdr.by_second(hdr.read_log(run.latency_log))
    return run, seconds_h, (duration if duration is not None else run.duration_s)


def ramp(n, fast_until, *, fast_ms=100.0, slow_ms=2000.0, errors=None):
    """rate(t) = t req/s; every response fast up to `fast_until`, slow after."""
    return [Second(t, t, t, [fast_ms if t <= fast_until else slow_ms] * t, (errors or {}).get(t, {}))
            for t in range(1, n + 1)]


def test_known_answer_on_a_ramp(tmp_path):
    # Any window holding second 36 has >= 36/315 = 11% slow responses, so p99 breaks the SLO;
    # the best window is seconds 26..35: mean rate (26+...+35)/10 = 30.5.
    run, secs, dur = run_of(tmp_path, ramp(60, 35))
    got = sustained_throughput(run.series, secs, Slo(p99_ms=1000.0), duration_s=dur)
    assert got.rps == pytest.approx(30.5)
    assert (got.window.first_s, got.window.last_s) == (25, 35)
    assert got.window.p99_ms == pytest.approx(100.0, rel=1e-3)


def test_a_looser_slo_admits_the_whole_ramp(tmp_path):
    run, secs, dur = run_of(tmp_path, ramp(60, 35))
    got = sustained_throughput(run.series, secs, Slo(p99_ms=2500.0), duration_s=dur)
    assert got.rps == pytest.approx(55.5)  # seconds 51..60


def test_error_rate_bound(tmp_path):
    # 10 errors in second 30: windows holding it have >= 10/315 > 1% errors; best is then 20..29.
    run, secs, dur = run_of(tmp_path, ramp(60, 35, errors={30: {"http_503": 10}}))
    got = sustained_throughput(run.series, secs, Slo(p99_ms=1000.0, error_rate=0.01), duration_s=dur)
    assert got.rps == pytest.approx(24.5)
    assert sustained_throughput(run.series, secs, Slo(p99_ms=1000.0, error_rate=0.05), duration_s=dur).rps == \
        pytest.approx(30.5)


def test_warmup_and_drain_tail_are_excluded(tmp_path):
    # 100 req/s in the 20-s warm-up and a burst of completions after the 50-s schedule: neither counts.
    seconds = [Second(t, 100 if t <= 20 else 10, 100 if t <= 20 else 10, [50.0] * (100 if t <= 20 else 10))
               for t in range(1, 51)]
    seconds += [Second(t, 0, 0, [50.0] * 200) for t in range(51, 61)]
    run, secs, _ = run_of(tmp_path, seconds, warmup_s=20.0)
    got = sustained_throughput(run.series, secs, Slo(), warmup_s=20.0, duration_s=50.0)
    assert got.rps == pytest.approx(10.0)
    assert got.window.first_s >= 20 and got.window.last_s <= 50


def test_a_partial_last_second_of_the_schedule_counts(tmp_path):
    # the schedule ran 14.97 s: second 15 is still inside it, second 16 (drain) is not
    seconds = [Second(t, 10, 10, [50.0] * 10) for t in range(1, 16)] + [Second(16, 0, 0, [50.0] * 40)]
    run, secs, _ = run_of(tmp_path, seconds)
    got = sustained_throughput(run.series, secs, Slo(), duration_s=14.97)
    assert got.rps == pytest.approx(10.0) and got.windows == 6


def test_nothing_meets_the_slo(tmp_path):
    run, secs, dur = run_of(tmp_path, ramp(20, 0))
    got = sustained_throughput(run.series, secs, Slo(p99_ms=1000.0), duration_s=dur)
    assert got.rps == 0.0 and got.window is None and "no 10-s window" in got.why_none


def test_too_short_a_run(tmp_path):
    run, secs, dur = run_of(tmp_path, ramp(8, 8))
    got = sustained_throughput(run.series, secs, Slo(), duration_s=dur)
    assert got.rps == 0.0 and "fewer than 10" in got.why_none


@pytest.mark.parametrize("kwargs", [{"p99_ms": 0}, {"p99_ms": float("nan")}, {"error_rate": 1.0},
                                    {"error_rate": -0.1}])
def test_slo_validation(kwargs):
    with pytest.raises(ValueError):
        Slo(**kwargs)
