"""Shared bits of the loadgen integration tests: start and stop the 127.0.0.1 test server."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import urllib.request

from hdrh.log import HistogramLogReader

from formats.results import SERIES_COLUMNS
from loadgen import recorder

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loadgen_testserver.py")


def child_env() -> dict:
    """Environment for child Pythons: our sys.path, so `loadgen` imports under Bazel too."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
    return env


def _port(proc) -> int:
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        raise RuntimeError(f"test server did not start (said {line!r})")
    return int(line)


@contextlib.contextmanager
def running_server(*args: str, lifetime_s: float = 60.0):
    """Yield (base_url, process) for a test server started with ``args``."""
    with _started(args, lifetime_s) as proc:
        yield f"http://127.0.0.1:{_port(proc)}", proc


@contextlib.contextmanager
def running_grpc_server(*args: str, lifetime_s: float = 60.0):
    """Yield (base_url, grpc_base, process): the test server with gRPC too; a target is
    ``grpc_base + "/MODEL"``, its /stats at ``base_url``."""
    with _started((*args, "--grpc"), lifetime_s) as proc:
        http = _port(proc)
        yield f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{_port(proc)}", proc


@contextlib.contextmanager
def _started(args, lifetime_s: float):
    proc = subprocess.Popen(
        [sys.executable, SERVER, "--max-lifetime-s", str(lifetime_s), *args],
        stdout=subprocess.PIPE, env=child_env(), text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=10) as resp:
        return json.load(resp)


def read_series(path) -> list[dict]:
    """series.csv's rows, checked: schema line, columns, numeric fields."""
    with open(path) as f:
        assert f.readline().strip() == "# servesweep.series/1"
        rows = list(csv.DictReader(f))
    for row in rows:
        assert list(row) == list(SERIES_COLUMNS)
        int(row["t_s"]), int(row["sent"]), float(row["target_rps"])
    return rows


def hlog_counts(path) -> list[int]:
    """The count of every interval in an HdrHistogram log."""
    reader = HistogramLogReader(str(path), recorder.new_histogram())
    counts = []
    while (h := reader.get_next_interval_histogram()) is not None:
        counts.append(h.get_total_count())
    return counts
