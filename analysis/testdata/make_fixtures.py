"""Writes small result directories in the exact schema-1 format (docs/results-format.md).

`write_run` is used by tests to build runs with known answers; `main` regenerates the
committed fixture sweep (`analysis/testdata/sweep/`), deterministically:

    PYTHONPATH=. python -m analysis.testdata.make_fixtures analysis/testdata/sweep
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from formats.results import (
    HIGHEST_US,
    HLOG_FILES,
    HLOG_SCHEMA,
    LOWEST_US,
    RUN_FILE,
    RUN_SCHEMA,
    SERIES_COLUMNS,
    SERIES_FILE,
    SERIES_SCHEMA,
    SIGNIFICANT_FIGURES,
    SWEEP_FILE,
    SWEEP_SCHEMA,
    TOOL,
)

FIXTURE_SWEEP = Path(os.path.abspath(__file__)).parent / "sweep"  # the committed sweep
START_EPOCH = 1795532400.0  # 2026-11-24T15:00:00Z


@dataclass
class Second:
    """What happened in one second of a run: latencies (ms) of ok responses and error counts."""

    t_s: int
    target_rps: float
    scheduled: int
    latencies_ms: Sequence[float]
    errors: dict[str, int] = field(default_factory=dict)
    send_lag_ms: float = 0.3


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hist(values_ms: Sequence[float]) -> HdrHistogram:
    h = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for v in values_ms:
        h.record_value(max(1, round(v * 1000.0)))
    return h


def _summary(h: HdrHistogram, values_ms: Sequence[float] = ()) -> dict[str, Any]:
    if not h.get_total_count():
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "p99_9": None, "max": None}
    q = {k: round(h.get_value_at_percentile(p) / 1000.0, 3)
         for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))}
    mean = round(float(np.mean(values_ms)), 3) if len(values_ms) else None
    return {"count": h.get_total_count(), "mean": mean, **q,
            "max": round(h.get_max_value() / 1000.0, 3)}


def _open_log(path: Path, name: str, schema: str) -> HistogramLogWriter:
    f = path.open("w", encoding="utf-8")
    w = HistogramLogWriter(f)
    w.output_comment(f"[{schema}]")
    w.output_log_format_version()
    f.write(f"#[StartTime: {START_EPOCH:.3f} (seconds since epoch), {iso(START_EPOCH)}]\n")
    w.output_comment(f"[{name} latency in microseconds, 1 s intervals]")
    w.output_legend()
    return w


def write_run(out_dir: Path | str, seconds: Sequence[Second], *, config: dict[str, Any] | None,
              warmup_s: float = 0.0, valid: bool = True, reasons: Sequence[str] = (),
              complete: bool = True, server: dict[str, Any] | None = None,
              profile: dict[str, Any] | None = None, hlog_schema: str = HLOG_SCHEMA) -> dict[str, Any]:
    """Write run.json, series.csv and both hlogs for `seconds`; returns the run record."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    duration = float(len(seconds))
    logs = {name: _open_log(out / filename, name, hlog_schema) for name, filename in HLOG_FILES.items()}
    totals = {"scheduled": 0, "sent": 0, "ok": 0, "errors": 0}
    classes: dict[str, int] = {"connect": 0, "dropped": 0, "timeout": 0}
    run_hists = {"corrected": _hist([]), "uncorrected": _hist([])}
    all_ms: list[float] = []
    lag_max = 0.0
    with (out / SERIES_FILE).open("w", newline="", encoding="utf-8") as f:
        f.write(f"# {SERIES_SCHEMA}\n")
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(SERIES_COLUMNS)
        for s in seconds:
            lat = list(s.latencies_ms)
            hists = {"corrected": _hist(lat), "uncorrected": _hist([v * 0.97 for v in lat])}
            n_err = sum(s.errors.values())
            dropped = s.errors.get("dropped", 0)
            sent = s.scheduled - dropped
            q = _summary(hists["corrected"], lat)
            all_ms.extend(lat)
            wr.writerow([s.t_s, f"{s.target_rps:g}", s.scheduled, sent, len(lat), n_err, dropped,
                         "|".join(f"{k}:{v}" for k, v in sorted(s.errors.items()) if v), 0,
                         *("" if q[k] is None else f"{q[k]:g}" for k in ("p50", "p90", "p99", "max")),
                         f"{s.send_lag_ms:g}" if sent else ""])
            for name, h in hists.items():
                h.set_start_time_stamp((s.t_s - 1) * 1000.0)
                h.set_end_time_stamp(s.t_s * 1000.0)
                logs[name].output_interval_histogram(h, max_value_unit_ratio=1000.0)
                run_hists[name].add(h)
            totals["scheduled"] += s.scheduled
            totals["sent"] += sent
            totals["ok"] += len(lat)
            totals["errors"] += n_err
            for k, v in s.errors.items():
                classes[k] = classes.get(k, 0) + v
            lag_max = max(lag_max, s.send_lag_ms)
    for w in logs.values():
        w.close()
    record = {
        "schema": RUN_SCHEMA,
        "tool": dict(TOOL),
        "config": config,
        "server": server or {"kind": "local", "version": "0.1.0", "argv": [], "image_digest": None},
        "profile": profile or {"kind": "ramp", "arrivals": "uniform", "seed": 0, "duration_s": duration,
                               "rate": None, "users": None, "spawn_rate": None, "per_user_rps": None,
                               "steps": None},
        "payload": {"kind": "tensor", "bytes": 602112, "sha256": hashlib.sha256(b"fixture").hexdigest()},
        "targets": ["http://127.0.0.1:8501/v1/models/resnet:predict"],
        "options": {"max_in_flight": 256, "timeout_s": 30.0, "workers": 1, "max_send_lag_ms": 5.0,
                    "transport": "aiohttp"},
        "started_at": iso(START_EPOCH),
        "ended_at": iso(START_EPOCH + duration),
        "duration_s": duration,
        "warmup_s": warmup_s,
        "complete": complete,
        "totals": {**totals, "error_classes": dict(sorted(classes.items()))},
        "latency_ms": {k: _summary(h, [v * (0.97 if k == "uncorrected" else 1.0) for v in all_ms])
                       for k, h in run_hists.items()},
        "send_lag_ms": {"p50": 0.3, "p99": lag_max, "max": lag_max},
        "out_of_range": {"latency": 0, "uncorrected": 0, "send_lag": 0},
        "validity": {"valid": valid, "reasons": list(reasons)},
    }
    (out / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


# ---- the committed fixture sweep: the seed study's four shapes plus an invalid batching run ----

SEED_SHAPES = [
    # id, name, vcpu, memory_gb, nodes, inter_op, batching, capacity rps, base ms, valid
    ("c-0a2f4b6c8d", "e2-2-4x8-inter4", 2, 4, 8, 4, False, 22.0, 260.0, True),
    ("c-1b3e5d7f9a", "e2-4-8x4-inter4", 4, 8, 4, 4, False, 27.0, 230.0, True),
    ("c-2c4a6e8b0d", "e2-8-16x2-inter4", 8, 16, 2, 4, False, 33.0, 200.0, True),
    ("c-3d5b7a9c1e", "e2-8-64x2-inter4", 8, 64, 2, 4, False, 33.0, 200.0, True),
    ("c-4e6c8b0d2f", "e2-8-64x2-inter4-batch", 8, 64, 2, 4, True, 42.0, 180.0, False),
]


def config_record(cid: str, name: str, vcpu: int, mem: int, nodes: int, inter: int, batching: bool) -> dict:
    mt = f"e2-custom-{vcpu}-{mem * 1024}"
    serving = {"model_name": "resnet", "intra_op_parallelism": vcpu, "inter_op_parallelism": inter,
               "rest_api_num_threads": None, "enable_batching": batching,
               "batching": ({"max_batch_size": 128, "batch_timeout_micros": 0, "max_enqueued_batches": 2,
                             "num_batch_threads": 2} if batching else None)}
    return {"id": cid, "name": name,
            "shape": {"machine_type": mt, "vcpu": vcpu, "memory_gb": mem, "nodes": nodes, "pricing": "e2-custom"},
            "replicas": nodes, "serving": serving}


def model_seconds(rng: np.random.Generator, capacity: float, base_ms: float, n: int = 45,
                  start_rps: float = 4.0, slope: float = 1.0) -> list[Second]:
    """A ramp against a server of `capacity` rps: latency climbs near capacity, then queues."""
    out, backlog = [], 0.0
    for t in range(1, n + 1):
        rate = start_rps + slope * (t - 1)
        scheduled = round(rate)
        rho = min(rate / capacity, 1.0)
        served = min(scheduled + backlog, capacity)
        backlog = max(0.0, backlog + scheduled - served)
        median = base_ms * (1.0 + 2.5 * rho**6) + 1000.0 * backlog / capacity
        ok = int(served)
        lat = rng.lognormal(np.log(median), 0.35, size=ok)
        errors = {"http_503": int(rng.integers(1, 4))} if backlog > capacity else {}
        out.append(Second(t, rate, scheduled, lat.round(3).tolist(), errors))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and os.environ.get("BUILD_WORKING_DIRECTORY"):
        print("usage: bazel run //analysis:make_fixtures -- DIR (e.g. analysis/testdata/sweep)", file=sys.stderr)
        return 2
    dest = Path(os.environ.get("BUILD_WORKING_DIRECTORY", "."), args[0]) if args else FIXTURE_SWEEP
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rng = np.random.default_rng(20261124)
    configs = []
    for cid, name, vcpu, mem, nodes, inter, batching, cap, base, valid in SEED_SHAPES:
        cfg = config_record(cid, name, vcpu, mem, nodes, inter, batching)
        configs.append(cfg)
        argv_flags = [f"--tensorflow_intra_op_parallelism={vcpu}", f"--tensorflow_inter_op_parallelism={inter}"]
        if batching:
            argv_flags += ["--enable_batching=true", "--batching_parameters_file=/etc/tfs-config/batching_config.txt"]
        server = {"kind": "tensorflow_model_server", "version": "2.19.0", "argv": argv_flags,
                  "image_digest": "sha256:" + hashlib.sha256(b"tfs-resnet-cpu-opt").hexdigest()}
        reasons = [] if valid else ["send lag p99 7.9 ms > 5 ms: generator fell behind its schedule"]
        seconds = model_seconds(rng, cap, base)
        if not valid:
            for s in seconds:
                s.send_lag_ms = 7.9
        write_run(dest / cid, seconds, config=cfg, warmup_s=5.0, valid=valid, reasons=reasons, server=server)
    sweep = {"schema": SWEEP_SCHEMA, "sweep_id": "fixture-seed-shapes",
             "spec": {"name": "seed-shapes", "note": "committed analysis fixture"},
             "slo": {"p99_ms": 1000.0, "error_rate": 0.01}, "configs": configs,
             "tool": dict(TOOL), "lock_sha256": "0" * 64,
             "git_commit": "fixture", "host": {"hostname": "fixture", "cpus": 2}}
    (dest / SWEEP_FILE).write_text(json.dumps(sweep, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(configs)} runs to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
