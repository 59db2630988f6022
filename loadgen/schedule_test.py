import numpy as np
import pytest

from loadgen import schedule
from loadgen.schedule import Profile, ScheduleError


def _all(p):
    chunks = list(schedule.arrival_times(p, chunk=1000))
    return np.concatenate(chunks) if chunks else np.array([])


def test_parse_steps():
    assert schedule.parse_steps("50:60s,100:1m") == ((50.0, 60.0), (100.0, 60.0))
    for bad in ["", "50", "x:1s", "-5:1s", "5:1x"]:
        with pytest.raises(ScheduleError):
            schedule.parse_steps(bad)


RAMP = Profile(kind="ramp", duration_s=300.0, users=150, spawn_rate=1.0, per_user_rps=1.0)


@pytest.mark.parametrize(
    "t, rate",
    [(0.0, 0.0), (1.0, 1.0), (10.0, 10.0), (149.0, 149.0), (150.0, 150.0), (200.0, 150.0),
     (299.9, 150.0), (300.0, 0.0)],
)
def test_ramp_rate_table(t, rate):
    assert schedule.rate_at(RAMP, t) == pytest.approx(rate)


def test_ramp_climbs_one_per_second_and_reaches_150_users_at_150s():
    arrivals = _all(RAMP)
    per_second = np.bincount(np.floor(arrivals).astype(int), minlength=300)
    # second k holds the integral of the rate over [k, k+1): k + 0.5 while ramping
    for k in (10, 50, 100, 149):
        assert abs(per_second[k] - (k + 0.5)) <= 1
        assert schedule.expected_arrivals(RAMP, k, k + 1) == pytest.approx(k + 0.5)
    assert np.all(np.abs(per_second[150:] - 150) <= 1)
    # total = ramp triangle + plateau
    assert arrivals.size == pytest.approx(150 * 150 / 2 + 150 * 150, abs=1)


def test_ramp_with_spawn_rate_and_per_user_rps():
    p = Profile(kind="ramp", duration_s=20.0, users=10, spawn_rate=2.0, per_user_rps=3.0)
    assert schedule.rate_at(p, 2.5) == pytest.approx(2.0 * 2.5 * 3.0)
    assert schedule.rate_at(p, 5.0) == pytest.approx(30.0)
    assert schedule.rate_at(p, 19.0) == pytest.approx(30.0)


def test_ramp_longer_than_duration_is_cut():
    p = Profile(kind="ramp", duration_s=10.0, users=100, spawn_rate=1.0, per_user_rps=1.0)
    assert schedule.rate_at(p, 9.5) == pytest.approx(9.5)
    assert _all(p).size == pytest.approx(50, abs=1)


@pytest.mark.parametrize("rate", [1.0, 7.0, 100.0, 2500.0])
def test_constant_uniform_is_evenly_spaced_from_zero(rate):
    p = Profile(kind="constant", duration_s=4.0, rate=rate)
    a = _all(p)
    assert a.size == round(4.0 * rate)
    assert a[0] == 0.0
    np.testing.assert_allclose(np.diff(a), 1.0 / rate, rtol=1e-9)
    assert a[-1] < 4.0


def test_steps_table_and_hold_of_last_step():
    p = Profile(kind="steps", duration_s=5.0, steps=((10.0, 2.0), (40.0, 1.0)))
    assert [schedule.rate_at(p, t) for t in (0.5, 1.9, 2.0, 2.5, 3.5, 4.9)] == [
        10.0, 10.0, 40.0, 40.0, 40.0, 40.0]
    per_second = np.bincount(np.floor(_all(p)).astype(int), minlength=5)
    assert per_second.tolist() == [10, 10, 40, 40, 40]


def test_steps_cut_by_duration():
    p = Profile(kind="steps", duration_s=1.5, steps=((10.0, 1.0), (20.0, 5.0)))
    assert _all(p).size == 20


def test_poisson_mean_rate_within_2_percent_over_1e5_arrivals():
    p = Profile(kind="constant", duration_s=100.0, rate=1000.0, arrivals="poisson", seed=42)
    a = _all(p)
    assert abs(a.size / 100.0 - 1000.0) / 1000.0 < 0.02
    gaps = np.diff(a)
    # exponential gaps: coefficient of variation ~1 (uniform would be 0)
    assert 0.95 < gaps.std() / gaps.mean() < 1.05
    assert np.all(gaps >= 0)


def test_poisson_is_seeded_and_reproducible():
    p = Profile(kind="constant", duration_s=5.0, rate=200.0, arrivals="poisson", seed=7)
    q = Profile(kind="constant", duration_s=5.0, rate=200.0, arrivals="poisson", seed=8)
    np.testing.assert_array_equal(_all(p), _all(p))
    assert not np.array_equal(_all(p)[:50], _all(q)[:50])


def test_poisson_follows_a_ramp():
    p = Profile(kind="ramp", duration_s=40.0, users=400, spawn_rate=20.0, per_user_rps=1.0,
                arrivals="poisson", seed=1)
    a = _all(p)
    first, second = np.sum(a < 10.0), np.sum((a >= 20.0) & (a < 30.0))
    # expected 1000 arrivals in [0,10) and 4000 in [20,30)
    assert abs(first - 1000) < 130
    assert abs(second - 4000) < 260


def test_chunks_are_sorted_and_continuous():
    p = Profile(kind="constant", duration_s=3.0, rate=3000.0)
    chunks = list(schedule.arrival_times(p, chunk=1000))
    assert len(chunks) == 9
    a = np.concatenate(chunks)
    assert np.all(np.diff(a) > 0)
    assert schedule.scheduled_count(p) == 9000


@pytest.mark.parametrize(
    "kwargs",
    [dict(kind="nope", duration_s=1.0, rate=1.0),
     dict(kind="constant", duration_s=1.0),
     dict(kind="constant", duration_s=0.0, rate=1.0),
     dict(kind="constant", duration_s=1.0, rate=1.0, arrivals="bursty"),
     dict(kind="ramp", duration_s=1.0, users=10, spawn_rate=1.0),
     dict(kind="steps", duration_s=1.0)],
)
def test_bad_profiles_say_why(kwargs):
    with pytest.raises(ScheduleError):
        Profile(**kwargs)


def test_profile_dict_round_trip():
    p = Profile(kind="steps", duration_s=5.0, steps=((1.0, 2.0),), arrivals="poisson", seed=3)
    d = p.to_dict()
    assert d["steps"] == [[1.0, 2.0]]
    assert Profile.from_dict(d) == p
    with pytest.raises(ScheduleError):
        Profile.from_dict({**d, "bogus": 1})
