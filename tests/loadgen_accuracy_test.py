"""The generator's latency against a 127.0.0.1 server whose delays are known."""

import dataclasses
import os

import numpy as np
import pytest

from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from tests.loadgen_helpers import running_server, server_stats

PATH = "/v1/models/m:predict"
RATE = 300


def _options(url, rate, duration_s, tmp_path, **kw):
    # a small body: these tests time the generator, not the transfer of a big payload
    body = tmp_path / "body.json"
    body.write_text('{"instances": [[1, 2, 3]]}')
    return RunOptions(targets=(url + PATH,),
                      profile=Profile(kind="constant", rate=rate, duration_s=duration_s),
                      payload=f"file:{body}", max_in_flight=512, timeout_s=10.0, **kw)


def _valid_run(options, out_dir, attempts=3):
    """A shared machine can stall the generator: such a run is marked invalid; retry it.

    If every attempt fell behind while the machine was overloaded (load average above
    its core count), timing cannot be judged here: skip, saying so. Otherwise fail.
    """
    for i in range(attempts):
        result = run(options, f"{out_dir}-{i}")
        if result.valid:
            return result
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        pytest.skip(f"machine overloaded (load {load:.1f}): no run kept its schedule: "
                    f"{result.record['validity']['reasons']}")
    raise AssertionError(f"no valid run in {attempts} attempts: {result.record['validity']}")


def _runs_against_truth(tmp_path, transports):
    """One calibrated measurement per transport: the same schedule against a server with
    the same seeded delays (a fresh one per transport: the n-th request sleeps delays[n]).

    Returns {transport: (record, [(key, reported, truth)] for p50, p90, p99)}.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = {}
    for transport in transports:
        with running_server("--delay-ms", "20", "--delay-sigma", "0.5", "--seed", "3") as (
                url, _):
            calib = _options(url, RATE, 1.0, tmp_path, transport=transport)
            calib = dataclasses.replace(calib, targets=(url + "/v1/models/zero:predict",))
            path_ms = _valid_run(calib, str(tmp_path / f"calib-{transport}")).record[
                "latency_ms"]["corrected"]["p50"]
            assert path_ms < 5.0
            before = len(server_stats(url)["held_ms"])
            result = _valid_run(_options(url, RATE, 3.0, tmp_path, transport=transport),
                                str(tmp_path / f"out-{transport}"))
            held = np.array(server_stats(url)["held_ms"][before:])
            rec = result.record
            assert rec["options"]["transport"] == transport
            assert rec["totals"]["ok"] == 3 * RATE
            truth = held[-3 * RATE:] + path_ms
            rows = []
            for key, pct in (("p50", 50), ("p90", 90), ("p99", 99)):
                want = float(np.percentile(truth, pct, method="inverted_cdf"))
                got = rec["latency_ms"]["corrected"][key]
                print(f"{transport} {key}: reported {got:.3f} ms, truth {want:.3f} ms "
                      f"(path {path_ms:.3f} ms)")
                rows.append((key, got, want))
            out[transport] = (rec, rows)
    return out


def _off(got, want, rel=0.02, floor_ms=1.0):
    return abs(got - want) > max(rel * want, floor_ms)


@pytest.mark.parametrize("transport", ["fast", "aiohttp"])
def test_reported_percentiles_match_the_servers_truth(tmp_path, transport):
    # Lognormal delays with mean 20 ms (p50 ~18 ms, p99 ~57 ms) at 300 req/s: ~6 requests
    # in flight, well under what the test server (sleeps, unbounded concurrency) handles;
    # higher rates on 2 shared cores make the generator and server fight for CPU.
    # Truth = how long the server held each request + the path's own cost (the median
    # latency of zero-delay requests at the same rate, measured just before). A busy
    # shared machine can shift the path's cost between the two runs, so a miss is
    # measured again (up to 3 times); a generator that is off stays off every time.
    for attempt in range(3):
        _, rows = _runs_against_truth(tmp_path / f"try{attempt}", [transport])[transport]
        misses = [(k, got, want) for k, got, want in rows if _off(got, want)]
        if not misses:
            return
    raise AssertionError(f"reported percentiles off the truth by > 2% and > 1 ms: {misses}")


def test_both_transports_report_the_same_run(tmp_path):
    # The same schedule through the fast and the aiohttp transport, one after the other,
    # against servers with the same seeded delays: the same counts, and percentiles that
    # agree with each other as closely as each agrees with the truth.
    for attempt in range(3):
        runs = _runs_against_truth(tmp_path / f"try{attempt}", ["fast", "aiohttp"])
        (fast, fast_rows), (slow, slow_rows) = runs["fast"], runs["aiohttp"]
        for key in ("scheduled", "sent", "ok", "errors"):
            assert fast["totals"][key] == slow["totals"][key], key
        assert fast["latency_ms"]["corrected"]["count"] == slow["latency_ms"]["corrected"]["count"]
        misses = [(key, a, b) for (key, a, _), (_, b, _) in zip(fast_rows, slow_rows, strict=True)
                  if _off(a, b, rel=0.03)]
        if not misses:
            return
    raise AssertionError(f"fast and aiohttp percentiles differ by > 3% and > 1 ms: {misses}")


def test_a_freezing_server_shows_in_corrected_p99(tmp_path):
    # the server blocks its event loop for 1 s every 5 s; 6 s of 100 req/s span a freeze
    with running_server("--delay-ms", "2", "--freeze-every", "5", "--freeze-s", "1") as (
            url, _):
        result = run(_options(url, 100.0, 6.0, tmp_path), str(tmp_path / "out"))
    rec = result.record
    assert rec["totals"]["ok"] == 600
    assert rec["latency_ms"]["corrected"]["p99"] >= 900.0
    if result.valid:  # the generator kept its schedule (send lag p99 < 5 ms) meanwhile
        assert rec["latency_ms"]["corrected"]["max"] <= 1200.0
