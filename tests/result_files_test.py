"""loadgen's writer and analysis's reader agree on the result files: a run written by
``loadgen.results.ResultsWriter`` reads back through ``analysis.results`` and ``analysis.hdr``
with every value intact, and neither side needs TensorFlow."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis import hdr
from analysis.results import load_results, load_run, parse_error_classes
from loadgen import recorder
from loadgen.recorder import Interval
from loadgen.results import ResultsWriter

START = 1_700_000_000.0
CONFIG = {"id": "c-0123456789", "name": "tiny-x1"}
HEADER = {"config": CONFIG, "server": {"kind": "external"},
          "profile": {"kind": "constant", "duration_s": 3.0, "rate": 10.0},
          "payload": {"kind": "b64", "bytes": 10, "sha256": "x"},
          "targets": ["http://127.0.0.1:1/v1/models/m:predict"],
          "options": {"max_in_flight": 8}}


def _second(t: int, latencies_us: list[int], errors: dict[str, int], in_flight: int = 0) -> Interval:
    answered = len(latencies_us) + sum(errors.values())  # every arrival sent, or dropped
    iv = Interval(t, scheduled=answered, sent=answered - errors.get("dropped", 0),
                  ok=len(latencies_us), in_flight=in_flight)
    iv.errors.update(errors)
    recorder.load_values(iv.hists["corrected"], np.array(latencies_us))
    recorder.load_values(iv.hists["uncorrected"], np.array(latencies_us) * 9 // 10)
    recorder.load_values(iv.hists["send_lag"], np.array([150] * max(1, len(latencies_us))))
    return iv


def write_run(out: Path) -> tuple[dict, list[dict], dict[int, int]]:
    """A three-second run with loadgen's writer: (run record, series rows, ok per second)."""
    seconds = [
        _second(1, [8_000] * 7 + [40_000, 55_000], {"http_503": 1}, in_flight=2),
        _second(2, [12_000 + 500 * i for i in range(10)], {"timeout": 2, "dropped": 1}),
        _second(3, [], {}),  # nothing answered: empty latency cells
    ]
    ok = {iv.t_s: iv.ok for iv in seconds}
    writer = ResultsWriter(str(out), HEADER, START)
    rows = [writer.write_interval(iv, target_rps=10.0) for iv in seconds]
    record = writer.finish(ended_at_epoch=START + 3.0, elapsed_s=3.0, complete=True,
                           slo_latency_ms=1000.0, warmup_s=1.0)
    return record, rows, ok


def check_round_trip(out: Path) -> None:
    """Write a run into ``out`` and read it back with analysis, asserting the values agree."""
    record, rows, ok = write_run(out)

    run = load_run(out)
    assert run.record == record  # run.json, every field
    assert (run.id, run.name, run.valid, run.warmup_s, run.duration_s) == ("c-0123456789", "tiny-x1",
                                                                           True, 1.0, 3.0)
    assert [r.id for r in load_results(out).runs] == [run.id]  # a bare run directory is a results dir

    series = run.series.to_dict("records")
    assert len(series) == len(rows)
    for written, read in zip(rows, series, strict=True):
        assert list(read) == list(written)  # same columns, same order
        for column, value in written.items():
            got = read[column]
            if value is None:
                assert isinstance(got, float) and math.isnan(got), (written["t_s"], column, got)
            elif isinstance(value, str):
                assert got == value, (written["t_s"], column)
            else:
                assert got == pytest.approx(value), (written["t_s"], column)
    assert [parse_error_classes(r["error_classes"]) for r in series] == [
        {"http_503": 1}, {"dropped": 1, "timeout": 2}, {}]

    for name, path in (("corrected", run.latency_log), ("uncorrected", run.uncorrected_log)):
        intervals = hdr.read_log(path)
        per_second = hdr.by_second(intervals)
        assert {t: h.get_total_count() for t, h in per_second.items()} == ok
        assert [(iv.start_s, iv.end_s) for iv in intervals] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
        merged = hdr.percentiles_ms(hdr.merge(h for h in per_second.values()))
        summary = record["latency_ms"][name]
        assert merged["count"] == summary["count"] == sum(ok.values())
        for key in ("p50", "p90", "p99", "p99_9", "max"):
            assert merged[key] == pytest.approx(summary[key], abs=1e-3), (name, key)
        if name == "corrected":  # the per-second cells of series.csv come from the same histograms
            for row in rows:
                if row["p99_ms"] is not None:
                    second = hdr.percentiles_ms(per_second[row["t_s"]])
                    assert (second["p50"], second["p99"], second["max"]) == pytest.approx(
                        (row["p50_ms"], row["p99_ms"], row["max_ms"]), abs=1e-3)


def test_a_run_written_by_loadgen_reads_back_in_analysis(tmp_path):
    check_round_trip(tmp_path / "run")


def test_writing_and_reading_never_import_tensorflow(tmp_path):
    # in a fresh interpreter: this process may hold tensorflow for other tests of the session
    code = ("import runpy, sys; from pathlib import Path; "
            "runpy.run_path(sys.argv[1])['check_round_trip'](Path(sys.argv[2])); "
            "sys.exit('tensorflow was imported' if 'tensorflow' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)}
    done = subprocess.run([sys.executable, "-c", code, os.path.abspath(__file__), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
