import pytest

from formats.slo import Slo, SloError


def test_valid_slo_round_trips():
    slo = Slo.from_dict({"p99_ms": 250, "error_rate": 0.005})
    assert slo == Slo(250.0, 0.005) and slo.to_dict() == {"p99_ms": 250.0, "error_rate": 0.005}
    assert Slo.from_dict({}) == Slo() and slo.text() == "p99 <= 250 ms, errors <= 0.5%"


@pytest.mark.parametrize("d, field", [
    ({"error_rate": 1}, "error_rate"),       # every request may fail: nothing to judge
    ({"error_rate": -0.1}, "error_rate"),
    ({"error_rate": "1%"}, "error_rate"),    # the record holds numbers; text goes through units
    ({"p99_ms": 0}, "p99_ms"),
    ({"p99_ms": float("inf")}, "p99_ms"),
    ({"p99_ms": True}, "p99_ms"),
    ({"p50_ms": 10}, "p50_ms"),
])
def test_an_slo_that_cannot_be_judged_is_refused_naming_the_field(d, field):
    with pytest.raises(SloError) as err:
        Slo.from_dict(d)
    assert err.value.field == field
