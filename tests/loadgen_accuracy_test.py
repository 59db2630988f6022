"""The generator's latency against a 127.0.0.1 server whose delays are known.

Each transport is measured once (a module fixture): a calibration run against the
server's zero-delay path gives that transport's own path cost, then the measured run
against seeded lognormal delays. Tolerances follow from what was measured, not from a
fixed number of milliseconds:

- against the truth (how long the server held each request + the path's median cost):
  ``REL`` of the value, plus the path's own jitter (its calibrated p99 - p50);
- the two transports against each other: ``REL`` plus the sum of their path costs
  (calibrated p99s), since each reported latency is the hold time + its own path.

No run is retried. A run the generator could not keep on schedule fails the test,
saying what used the CPUs meanwhile; when other processes or the hypervisor took them
(not this test), it is skipped on a developer's machine and fails under CI=true.
"""

import contextlib
import dataclasses
import os

import numpy as np
import pytest

from loadgen import hostcpu
from loadgen.results import LAG_SHARE
from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from serving import tensor_proto
from serving import tfs_messages_pb2 as pb
from tests.loadgen_helpers import running_grpc_server, running_server, server_stats

PATH = "/v1/models/m:predict"
RATE = 200
# the send-lag rule allows 5% of the latency. At 20 ms that was 1 ms, which an Intel KVM
# machine of this kind kept (lag p99 ~0.2 ms) but an AMD EPYC one did not (1.1-2.3 ms);
# at 60 ms and 300 req/s (3 ms), fresh-clone CI runs on the AMD machine failed with the
# aiohttp transport at 3.8-5.3 ms (its responses share the sending loop; 0.3-0.6 ms when
# the machine is otherwise idle). 150 ms at 200 req/s allows 7.5 ms with a third less
# loop work; ~30 requests are in flight.
DELAY_MS = 150.0
SECONDS = 3.0
CALIBRATION_S = 2.0  # 400 requests: its send-lag p99 is not one stall of a few sends
PRIME_S = 0.5
REL = 0.02  # the accuracy claimed for a percentile, beyond the path's own cost
BUSY_CPUS = 0.5  # other processes + steal above this: the machine, not the test, was busy
THROTTLED_SHARE = 0.01  # held back by a cgroup CPU quota for more than this share of the run


def _options(url, rate, duration_s, tmp_path, model="m", **kw):
    """A run against ``url``: an http:// base (REST's predict path for ``model``) or a
    grpc:// one (``grpc://HOST:PORT`` + /model)."""
    # a small body: these tests time the generator, not the transfer of a big payload
    if url.startswith("grpc://"):
        request = pb.PredictRequest()
        request.inputs["x"].CopyFrom(tensor_proto.from_numpy(np.array([[1.0, 2.0, 3.0]], np.float32)))
        body, target = tmp_path / "body.pb", f"{url}/{model}"
        body.write_bytes(request.SerializeToString())
    else:
        body, target = tmp_path / "body.json", f"{url}/v1/models/{model}:predict"
        body.write_text('{"instances": [[1, 2, 3]]}')
    return RunOptions(targets=(target,),
                      profile=Profile(kind="constant", rate=rate, duration_s=duration_s),
                      payload=f"file:{body}", max_in_flight=512, timeout_s=10.0, **kw)


def _require_valid(result, usage: hostcpu.Usage | None, what: str) -> None:
    """Fail (or, off CI, skip when the machine was busy) unless ``result`` is valid."""
    if result.valid:
        return
    reasons = "; ".join(result.record["validity"]["reasons"])
    where = usage.describe() if usage else "CPU use unknown (no /proc/stat)"
    busy = usage is not None and (usage.others + usage.steal > BUSY_CPUS
                                  or usage.throttled_s > THROTTLED_SHARE * usage.wall_s)
    if busy and os.environ.get("CI") != "true":
        pytest.skip(f"{what}: the machine was busy ({where}); {reasons}")
    culprit = ("other processes, the hypervisor or a CPU quota" if busy
               else "this test's own processes")
    raise AssertionError(f"{what} invalid while {culprit} used the CPUs ({where}): {reasons}")


@dataclasses.dataclass(frozen=True)
class Measured:
    record: dict  # run.json of the measured run
    path_p50_ms: float  # the zero-delay round trip at the same rate
    path_p99_ms: float
    rows: tuple  # (key, reported, truth) for p50, p90, p99


@contextlib.contextmanager
def _server(transport: str, *args: str):
    """Yield (stats URL, base to send to, process): gRPC's test server for ``grpc``."""
    if transport == "grpc":
        with running_grpc_server(*args) as (url, grpc_base, proc):
            yield url, grpc_base, proc
    else:
        with running_server(*args) as (url, proc):
            yield url, url, proc


def _measure(tmp_path, transport: str) -> Measured:
    with _server(transport, "--delay-ms", str(DELAY_MS), "--delay-sigma", "0.5", "--seed", "3") as (
            url, base, proc):
        # the calibration is judged against the latencies it calibrates (~DELAY_MS)
        calib = _options(base, RATE, CALIBRATION_S, tmp_path, model="zero", transport=transport,
                         max_send_lag_ms=LAG_SHARE * DELAY_MS)
        # a short unjudged run first pays this process's first-use costs of the transport
        # (imports, connection setup: a 46 ms stall in a 1 s calibration failed a fresh-clone
        # CI run with the CPUs idle); its result is not used
        run(dataclasses.replace(calib, profile=Profile(kind="constant", rate=RATE, duration_s=PRIME_S)),
            str(tmp_path / f"prime-{transport}"))
        before = hostcpu.snapshot([proc.pid])
        calibrated = run(calib, str(tmp_path / f"calib-{transport}"))
        _require_valid(calibrated, hostcpu.usage(before, hostcpu.snapshot([proc.pid])),
                       f"{transport} calibration")
        path = calibrated.record["latency_ms"]["corrected"]
        served_before = len(server_stats(url)["held_ms"])
        before = hostcpu.snapshot([proc.pid])
        result = run(_options(base, RATE, SECONDS, tmp_path, transport=transport),
                     str(tmp_path / f"out-{transport}"))
        usage = hostcpu.usage(before, hostcpu.snapshot([proc.pid]))
        held = np.array(server_stats(url)["held_ms"][served_before:])
    _require_valid(result, usage, f"{transport} run")
    rec = result.record
    assert rec["options"]["transport"] == transport
    assert rec["totals"]["ok"] == SECONDS * RATE == held.size
    truth = held + path["p50"]
    rows = []
    for key, pct in (("p50", 50), ("p90", 90), ("p99", 99)):
        want = float(np.percentile(truth, pct, method="inverted_cdf"))
        got = rec["latency_ms"]["corrected"][key]
        print(f"{transport} {key}: reported {got:.3f} ms, truth {want:.3f} ms (path p50 "
              f"{path['p50']:.3f}, p99 {path['p99']:.3f} ms; send lag p99 "
              f"{rec['send_lag_ms']['p99']:.3f} ms; {usage.describe() if usage else ''})")
        rows.append((key, got, want))
    return Measured(rec, path["p50"], path["p99"], tuple(rows))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Each transport measured once, shared by the tests below (a skip or failure while
    measuring is reported by each test that needs it)."""
    cache = {}

    def get(transport: str) -> Measured:
        if transport not in cache:
            cache[transport] = _measure(tmp_path_factory.mktemp(transport), transport)
        return cache[transport]

    return get


@pytest.mark.parametrize("transport", ["fast", "aiohttp", "grpc"])
def test_reported_percentiles_match_the_servers_truth(measured, transport):
    # Lognormal delays with mean 150 ms (p50 ~130 ms, p99 ~430 ms) at 200 req/s: ~30 requests
    # in flight. Truth = how long the server held each request + the path's median cost.
    m = measured(transport)
    jitter = m.path_p99_ms - m.path_p50_ms
    misses = [(k, got, want) for k, got, want in m.rows
              if abs(got - want) > REL * want + jitter]
    assert not misses, (f"reported percentiles off the truth by more than {REL:.0%} + the "
                        f"path's jitter {jitter:.3f} ms: {misses}")


def test_both_transports_report_the_same_run(measured):
    # The same schedule through both transports against servers with the same seeded
    # delays: the same counts, and percentiles apart by at most the two path costs.
    fast, slow = measured("fast"), measured("aiohttp")
    for key in ("scheduled", "sent", "ok", "errors"):
        assert fast.record["totals"][key] == slow.record["totals"][key], key
    assert (fast.record["latency_ms"]["corrected"]["count"]
            == slow.record["latency_ms"]["corrected"]["count"])
    paths = fast.path_p99_ms + slow.path_p99_ms
    misses = [(key, a, b) for (key, a, _), (_, b, _) in zip(fast.rows, slow.rows, strict=True)
              if abs(a - b) > REL * max(a, b) + paths]
    assert not misses, (f"fast and aiohttp percentiles differ by more than {REL:.0%} + their "
                        f"path costs {paths:.3f} ms: {misses}")


@pytest.mark.parametrize("transport", ["fast", "grpc"])
def test_a_freezing_server_shows_in_corrected_p99(tmp_path, transport):
    # the server blocks its event loop for 1 s every 5 s; 6 s of 100 req/s span a freeze
    with _server(transport, "--delay-ms", "2", "--freeze-every", "5", "--freeze-s", "1") as (
            _, base, _proc):
        result = run(_options(base, 100.0, 6.0, tmp_path, transport=transport), str(tmp_path / "out"))
    rec = result.record
    assert rec["totals"]["ok"] == 600
    assert rec["latency_ms"]["corrected"]["p99"] >= 900.0
    # a freeze of 1 s plus ~2 ms of service; the generator's own lateness on top
    assert rec["latency_ms"]["corrected"]["max"] <= 1200.0 + rec["send_lag_ms"]["max"]
