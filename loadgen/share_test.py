import pytest

from loadgen import payload as payload_mod
from loadgen.options import RunOptions
from loadgen.schedule import Profile
from loadgen.share import Share, ShareError


def _share(**kw) -> Share:
    options = RunOptions(targets=("http://svc:8501/v1/models/m:predict",),
                         profile=Profile(kind="steps", steps=((10.0, 5.0), (20.0, 5.0)), duration_s=10.0,
                                         arrivals="poisson", seed=7),
                         payload="b64", timeout_s=12.5, max_in_flight=99, workers=3, slo_latency_ms=250.0,
                         max_send_lag_ms=4.0, **kw)
    return Share(options=options, index=2, payload=payload_mod.load("b64", protocol="rest", model=None))


def test_a_share_crosses_the_wire_unchanged():
    share = _share(connections=7, warmup_s=1.5)
    back = Share.from_wire(share.to_wire())
    assert back == share
    assert back.count == 3 and back.payload.body == share.payload.body


@pytest.mark.parametrize("damage", [
    lambda d: d.pop("schema"),
    lambda d: d.update(index=3),  # beyond the share count
    lambda d: d["load"].update(timeout="soon"),
    lambda d: d["payload"].update(body_b64="not base64!"),
    lambda d: d["profile"].update(kind="sideways"),
    lambda d: d.pop("targets"),
])
def test_a_damaged_share_is_refused_with_a_reason(damage):
    wire = _share().to_wire()
    damage(wire)
    with pytest.raises(ShareError):
        Share.from_wire(wire)
