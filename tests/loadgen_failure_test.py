"""The generator survives a dying server, and its files survive a dying generator."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from hdrh.log import HistogramLogReader

from loadgen import recorder
from loadgen.results import SERIES_COLUMNS
from loadgen.run import RunOptions, run
from loadgen.schedule import Profile
from tests.loadgen_helpers import child_env, running_server

PATH = "/v1/models/m:predict"


def _series(path):
    with open(path) as f:
        assert f.readline().strip() == "# servesweep.series/1"
        rows = list(csv.DictReader(f))
    for row in rows:
        assert list(row) == list(SERIES_COLUMNS)
        int(row["t_s"]), int(row["sent"]), float(row["target_rps"])
    return rows


def _hlog_counts(path):
    reader = HistogramLogReader(path, recorder.new_histogram())
    counts = []
    while (h := reader.get_next_interval_histogram()) is not None:
        counts.append(h.get_total_count())
    return counts


@pytest.mark.parametrize("transport", ["aiohttp", "fast"])
def test_server_killed_mid_run(tmp_path, transport):
    with running_server("--delay-ms", "5") as (url, proc):
        options = RunOptions(targets=(url + PATH,),
                             profile=Profile(kind="constant", rate=50.0, duration_s=3.0),
                             payload="b64", max_in_flight=64, timeout_s=5.0,
                             transport=transport)
        threading.Timer(1.2, proc.kill).start()
        started = time.monotonic()
        result = run(options, str(tmp_path))
    assert time.monotonic() - started < 10.0
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec == result.record and rec["complete"] is True
    totals = rec["totals"]
    assert totals["scheduled"] == 150 and totals["sent"] == 150
    assert 30 <= totals["ok"] <= 90
    assert totals["error_classes"]["connect"] >= 50
    assert totals["ok"] + totals["errors"] == 150
    rows = _series(tmp_path / "series.csv")
    assert sum(int(r["ok"]) for r in rows) == totals["ok"]
    assert "connect:" in rows[-2]["error_classes"] or "connect:" in rows[-1]["error_classes"]
    assert sum(_hlog_counts(str(tmp_path / "latency.hlog"))) == totals["ok"]


def test_generator_killed_with_sigkill_leaves_parseable_files(tmp_path):
    out = tmp_path / "out"
    with running_server("--delay-ms", "5") as (url, _):
        gen = subprocess.Popen(
            [sys.executable, "-m", "loadgen.cli", "--target", url + PATH, "--rate", "50",
             "--duration", "20s", "--payload", "b64", "--out", str(out), "--quiet"],
            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until 3 seconds are on disk
                if (out / "series.csv").exists() and len(
                        (out / "series.csv").read_text().splitlines()) >= 5:
                    break
                assert gen.poll() is None, gen.stderr.read()
                time.sleep(0.1)
            os.kill(gen.pid, signal.SIGKILL)
        finally:
            gen.wait(timeout=10)
            gen.stderr.close()
    rows = _series(out / "series.csv")
    assert len(rows) >= 3
    counts = _hlog_counts(str(out / "latency.hlog"))
    assert len(counts) >= 3 and sum(counts) >= 100
    assert len(_hlog_counts(str(out / "latency_uncorrected.hlog"))) >= 3
    rec = json.loads((out / "run.json").read_text())
    assert rec["complete"] is False and rec["validity"]["valid"] is False
