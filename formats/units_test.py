import pytest

from formats import units


@pytest.mark.parametrize("value, seconds", [
    ("30s", 30.0), ("5m", 300.0), ("250ms", 0.25), ("1.5h", 5400.0), (".5s", 0.5),
    ("12", 12.0), ("0.5", 0.5), (7, 7.0), (2.5, 2.5), (" 90s ", 90.0), ("0", 0.0),
])
def test_durations_and_bare_numbers_are_seconds(value, seconds):
    assert units.parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "abc", "-1s", "3 days", "1x", "1.5.5s", True, float("inf"),
                                   float("nan"), -2])
def test_bad_durations_are_refused(value):
    with pytest.raises(units.UnitError):
        units.parse_duration(value)


def test_positive_refuses_zero_and_ms_scales():
    with pytest.raises(units.UnitError, match="> 0"):
        units.parse_duration("0s", positive=True)
    assert units.parse_duration_ms("5ms") == pytest.approx(5.0)
    assert units.parse_duration_ms("1") == 1000.0  # a bare number is seconds here too


@pytest.mark.parametrize("value, fraction", [("1%", 0.01), ("0.5%", 0.005), ("0.02", 0.02), (0, 0.0)])
def test_fractions(value, fraction):
    assert units.parse_fraction(value) == pytest.approx(fraction)


@pytest.mark.parametrize("value", ["x", "100%", "1.5", "-1%", 1, True])
def test_bad_fractions_are_refused(value):
    with pytest.raises(units.UnitError):
        units.parse_fraction(value)
