"""bench/serving's measuring helpers: the rate between completion events, and quiet slices."""


import pytest

from bench.serving import bench


def test_rate_counts_whole_batches_between_completion_events():
    # a batch of 8 every 0.4 s, its responses spread over 2 ms: 20 images/s whatever the window's edges
    completions = [(1.0 + 0.4 * k + 0.0002 * j, 1) for k in range(20) for j in range(8)]
    for start, end in ((1.1, 6.1), (0.9, 6.0), (1.35, 5.5)):
        assert bench.rate(completions, start, end) == pytest.approx(20.0)
    # counting whole windows (the old way) is off by up to a batch
    assert sum(n for t, n in completions if 1.1 <= t <= 6.1) / 5.0 != pytest.approx(20.0)


def test_rate_with_single_requests_and_too_few_events():
    completions = [(0.3 * k, 2) for k in range(100)]
    assert bench.rate(completions, 1.05, 10.0) == pytest.approx(2 / 0.3)
    assert bench.rate([(1.0, 8)], 0.0, 4.0) == 2.0  # one event: images over the window
    assert bench.rate([], 0.0, 4.0) == 0.0


def test_quiet_repeats_a_slice_while_other_processes_were_busy(monkeypatch):
    others = iter([0.9, 0.5, 0.05, 0.0])
    monkeypatch.setattr(bench, "others_cpus", lambda measure, pids: (measure(), next(others)))
    results = iter("abcd")
    assert bench.quiet(lambda: next(results), [], attempts=5) == ("c", 0.05, 3)
    others = iter([0.9, 0.4, 0.6])
    results = iter("abc")
    assert bench.quiet(lambda: next(results), [], attempts=3) == ("b", 0.4, 2)  # none quiet: the quietest
