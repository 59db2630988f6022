"""Writes a small capacity-search sweep (run.json method "search", probes.csv, probes/<r>-<n>/).

The format is docs/results-format.md "The capacity search". Each Config is a model server
whose p99 crosses the SLO's bound at a known capacity; a plain bracket-then-bisect search
probes it, each probe a real run directory (`make_fixtures.write_run`), its verdict the
Wilson interval of the over-bound fraction against 1 - 0.99. The committed fixture
(`analysis/testdata/search_sweep/`) is regenerated deterministically with

    PYTHONPATH=. python -m analysis.testdata.make_search_fixtures analysis/testdata/search_sweep

Its three Configs cost the same per hour: cpu1x2 and cpu1x2-batch have overlapping
intervals (tied), cpu2x1 is clearly lower.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.testdata.make_fixtures import START_EPOCH, Second, config_record, iso, write_run
from formats.results import (
    PROBES_COLUMNS,
    PROBES_DIR,
    PROBES_FILE,
    PROBES_SCHEMA,
    RUN_FILE,
    RUN_SCHEMA,
    SWEEP_FILE,
    SWEEP_SCHEMA,
    TOOL,
)

FIXTURE_SEARCH = Path(os.path.abspath(__file__)).parent / "search_sweep"  # the committed sweep
SLO = {"p99_ms": 1000.0, "error_rate": 0.01}
ALLOWED = 0.01  # over-bound fraction a probe may have: 1 - 0.99
Z95 = 1.96
RULES = {"confidence": 0.95, "transient_s": 3, "min_s": 13, "max_s": 40, "resolution": 0.03, "step": 1.25,
         "repeats": 1}
SIGMA = 0.35  # lognormal shape of the model server's latency
CI_HALF = 0.035  # the capacity interval's half-width around the point, relative (at least the bracket)


@dataclass(frozen=True)
class Model:
    """A server of `capacity` req/s: median latency base * (1 + k (rate / capacity)^6),
    with k such that the p99 meets the SLO's bound exactly at capacity."""

    capacity: float
    base_ms: float = 200.0

    def median_ms(self, rate: float) -> float:
        at_capacity = SLO["p99_ms"] / math.exp(2.3263 * SIGMA)
        k = at_capacity / self.base_ms - 1.0
        return self.base_ms * (1.0 + k * (rate / self.capacity) ** 6)


# id, name, vcpu, memory_gb, nodes, batching, model capacity (req/s)
SEARCH_SHAPES = [
    ("s-1a2b3c4d5e", "cpu1x2", 1, 2, 2, False, 30.0),
    ("s-2b3c4d5e6f", "cpu1x2-batch", 1, 2, 2, True, 29.9),
    ("s-3c4d5e6f7a", "cpu2x1", 2, 4, 1, False, 25.0),
]


def wilson(over: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial fraction over / n."""
    if n == 0:
        return 0.0, 1.0
    f = over / n
    centre = (f + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(f * (1 - f) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def probe(rng: np.random.Generator, model: Model, rate: float, out_dir: Path,
          config: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write one probe's run directory; returns (its probes.csv row without config/ids, run record).

    Decided once the over-bound fraction's interval (after the transient) excludes ALLOWED,
    from RULES' min_s on; at max_s undecided: marginal, judged on the point estimate."""
    secs, over, requests = [], 0, 0
    lo, hi = 0.0, 1.0
    for t in range(1, RULES["max_s"] + 1):
        n = int(rng.poisson(rate))
        lat = rng.lognormal(math.log(model.median_ms(rate)), SIGMA, size=n).round(3)
        secs.append(Second(t, rate, n, lat.tolist()))
        if t > RULES["transient_s"]:
            requests += n
            over += int((lat > SLO["p99_ms"]).sum())
        lo, hi = wilson(over, requests)
        if t >= RULES["min_s"] and not lo <= ALLOWED <= hi:
            break
    profile = {"kind": "constant", "arrivals": "poisson", "seed": 0, "duration_s": float(len(secs)), "rate": rate,
               "users": None, "spawn_rate": None, "per_user_rps": None, "steps": None}
    record = write_run(out_dir, secs, config=config, profile=profile)
    point = over / requests if requests else 1.0
    marginal = lo <= ALLOWED <= hi
    verdict = ("PASS" if point <= ALLOWED else "FAIL") if marginal else ("PASS" if hi < ALLOWED else "FAIL")
    lat = record["latency_ms"]["corrected"]
    row = {"rate": f"{rate:.6g}", "seconds": len(secs), "requests": requests, "over": over, "errors": 0,
           "error_classes": "", "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"],
           "inflation": "", "over_lo": f"{lo:.6g}", "over_hi": f"{hi:.6g}",
           "backlog_slope": f"{max(0.0, rate - model.capacity) * 0.3:.3g}", "verdict": verdict,
           "marginal": int(marginal), "valid": 1, "reason": "", "dir": ""}
    return row, record


def write_search_config(out_dir: Path, rng: np.random.Generator, model: Model, config: dict,
                        server: dict) -> dict[str, Any]:
    """Bracket from 1.12 x capacity by RULES' step, bisect to RULES' resolution; write it all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    lo = hi = None
    rate = round(model.capacity * 1.12, 3)
    for n in range(1, 11):
        rel = f"{PROBES_DIR}/1-{n}"
        row, record = probe(rng, model, rate, out_dir / rel, config)
        row.update(config=config["id"], repeat=1, probe=n, dir=rel)
        rows.append(row)
        records.append(record)
        if row["verdict"] == "PASS":
            lo = (rate, row, rel) if lo is None or rate > lo[0] else lo
        else:
            hi = rate if hi is None or rate < hi else hi
        if lo is not None and hi is not None and hi / lo[0] <= 1 + RULES["resolution"]:
            break
        rate = lo[0] * RULES["step"] if hi is None else hi / RULES["step"] if lo is None else math.sqrt(lo[0] * hi)
        rate = round(rate, 3)
    with (out_dir / PROBES_FILE).open("w", newline="", encoding="utf-8") as f:
        f.write(f"# {PROBES_SCHEMA}\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROBES_COLUMNS)
        w.writerows([r[c] for c in PROBES_COLUMNS] for r in rows)
    point = math.sqrt(lo[0] * hi)
    ci_lo, ci_hi = min(lo[0], point * (1 - CI_HALF)), max(hi, point * (1 + CI_HALF))
    totals = {k: sum(r["totals"][k] for r in records) for k in ("scheduled", "sent", "ok", "errors")}
    duration = float(sum(r["duration_s"] for r in records))
    best = lo[1]
    record = {
        "schema": RUN_SCHEMA, "tool": dict(TOOL), "method": "search", "config": config, "server": server,
        "payload": records[0]["payload"], "targets": records[0]["targets"], "options": records[0]["options"],
        "slo": dict(SLO), "rules": dict(RULES), "guess_rps": round(model.capacity * 1.12, 3),
        "capacity": {"rps": round(point, 3), "lo": round(ci_lo, 3), "hi": round(ci_hi, 3), "repeats": 1,
                     "points": [round(point, 3)], "errors": []},
        "searches": [{"repeat": 1, "capacity": round(point, 3), "lo": lo[0], "hi": hi, "ci_lo": round(ci_lo, 3),
                      "ci_hi": round(ci_hi, 3), "probes": len(rows), "converged": True, "error": None}],
        "probes": len(rows),
        "best_pass": {"rate": lo[0], "p50_ms": best["p50_ms"], "p90_ms": best["p90_ms"], "p99_ms": best["p99_ms"],
                      "dir": lo[2]},
        "started_at": iso(START_EPOCH), "ended_at": iso(START_EPOCH + duration), "duration_s": duration,
        "complete": True,
        "totals": {**totals, "error_classes": {"connect": 0, "dropped": 0, "timeout": 0}},
        "validity": {"valid": True, "reasons": []},
    }
    (out_dir / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


HOST = {"hostname": "fixture-vm", "cpu_model": "AMD EPYC 7B13", "cores": 8, "usable_cpus": [0, 1, 2, 3, 4, 5, 6, 7],
        "memory_gb": 31.4, "os": "Linux-6.1.0-28-cloud-amd64-x86_64-with-glibc2.36", "python": "3.11.2"}


def write_search_sweep(dest: Path, shapes: Sequence[tuple] = SEARCH_SHAPES, seed: int = 20261201) -> list[dict]:
    """A whole search sweep under `dest` (replaced); returns the Config records."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    configs = []
    for cid, name, vcpu, mem, nodes, batching, capacity in shapes:
        cfg = config_record(cid, name, vcpu, mem, nodes, vcpu, batching)
        configs.append(cfg)
        server = {"kind": "tensorflow_model_server", "version": "2.19.0",
                  "argv": [f"--tensorflow_intra_op_parallelism={vcpu}"] + (["--enable_batching=true"] * batching),
                  "image_digest": None}
        write_search_config(dest / cid, rng, Model(capacity), cfg, server)
    sweep = {"schema": SWEEP_SCHEMA, "sweep_id": "fixture-search", "name": "search-fixture",
             "spec": {"name": "search-fixture", "note": "committed analysis fixture (capacity search)"},
             "slo": dict(SLO), "configs": configs, "method": "search",
             "search": {"repeats": 1, "resolution": 0.03, "confidence": 0.95, "max_probe_s": 40, "min_probe_s": 13,
                        "transient_s": 3, "seed": 1, "saturation_s": 5.0},
             "tool": dict(TOOL), "lock_sha256": "0" * 64, "git": {"commit": "fixture", "dirty": False},
             "host": dict(HOST)}
    (dest / SWEEP_FILE).write_text(json.dumps(sweep, indent=2) + "\n", encoding="utf-8")
    return configs


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dest = Path(os.environ.get("BUILD_WORKING_DIRECTORY", "."), args[0]) if args else FIXTURE_SEARCH
    configs = write_search_sweep(dest)
    print(f"wrote {len(configs)} search Configs to {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
