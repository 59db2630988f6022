"""The result files' contract (docs/results-format.md, schema version 1), defined once.

The writers (loadgen, the sweep) and the readers (analysis) import these names, so a
file's name, schema or columns cannot drift between the side that writes it and the
side that reads it. Standard library only: importing this pulls in nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

TOOL = {"name": "servesweep", "version": "0.1.0"}  # run.json's and sweep.json's "tool"

# Schema names: the "schema" key of a JSON file, the first line "# <schema>" of a CSV,
# a "#[<schema>]" comment in an HdrHistogram log's header.
RUN_SCHEMA = "servesweep.run/1"
SERIES_SCHEMA = "servesweep.series/1"
HLOG_SCHEMA = "servesweep.hlog/1"
SERVER_METRICS_SCHEMA = "servesweep.server_metrics/1"
STATUS_SCHEMA = "servesweep.status/1"
WARMUP_SCHEMA = "servesweep.warmup/1"
SWEEP_SCHEMA = "servesweep.sweep/1"
TABLE_SCHEMA = "servesweep.table/1"  # report/table.csv
COMPARE_SCHEMA = "servesweep.compare/1"  # report/compare.csv
PROTOCOLS_SCHEMA = "servesweep.protocols/1"  # report/protocols.csv: REST vs gRPC per deployment
PROBES_SCHEMA = "servesweep.probes/1"  # <config>/probes.csv: the capacity search's probes
REPLICAS_SCHEMA = "servesweep.replicas/1"  # <config>/replicas.csv: each replica's share of each probe

# File names inside a sweep directory and a run (config) directory.
SWEEP_FILE = "sweep.json"
RUN_FILE = "run.json"
SERIES_FILE = "series.csv"
PROBES_FILE = "probes.csv"
PROBES_DIR = "probes"  # <config>/probes/<repeat>-<n>/: each probe's own run directory
REPLICAS_FILE = "replicas.csv"
SERVER_METRICS_FILE = "server_metrics.csv"  # a Config's, and each probe's (its replicas' metrics)
HLOG_FILES = {"corrected": "latency.hlog", "uncorrected": "latency_uncorrected.hlog"}

SERIES_COLUMNS = ("t_s", "target_rps", "scheduled", "sent", "ok", "errors", "dropped",
                  "error_classes", "in_flight", "p50_ms", "p90_ms", "p99_ms", "max_ms",
                  "send_lag_p99_ms")

# One row per probe of the capacity search (docs/results-format.md "probes.csv").
PROBES_COLUMNS = ("config", "repeat", "probe", "rate", "seconds", "requests", "over", "errors",
                  "error_classes", "p50_ms", "p90_ms", "p99_ms", "inflation", "over_lo", "over_hi",
                  "backlog_slope", "verdict", "marginal", "valid", "reason", "dir")

# One row per replica per probe (docs/results-format.md "replicas.csv"): the requests the
# replica counted during the probe (TF Serving's request_count) and its share of them.
REPLICAS_COLUMNS = ("config", "repeat", "probe", "dir", "replicas", "replica", "requests", "share",
                    "deviation", "imbalanced", "error")
# A replica's share is imbalanced when it is off 1/R by more than this, relative: |share * R - 1| > 0.2
IMBALANCE = 0.2

# run.json's "method": how a Config's capacity was measured
METHODS = ("search", "ramp")

# The two APIs a TF Serving model answers on: a Config's "protocol" and run.json's
# payload.protocol. REST is the default (and a Config that does not name one speaks it).
PROTOCOLS = ("rest", "grpc")
DEFAULT_PROTOCOL = "rest"


def protocol_pairs(config_records: Sequence[dict | None]) -> list[tuple[int, int]]:
    """(i, j) per deployment measured over both protocols: config records i (REST) and j
    (gRPC) equal but for id, name and protocol; the first of each, in order. The sweep
    pairs its Configs and the report its runs by this one rule."""
    by_key: dict[str, dict[str, int]] = {}
    for i, record in enumerate(config_records):
        if record:
            key = json.dumps({k: v for k, v in record.items() if k not in ("id", "name", "protocol")},
                             sort_keys=True, default=str)
            by_key.setdefault(key, {}).setdefault(record.get("protocol") or DEFAULT_PROTOCOL, i)
    return [(d["rest"], d["grpc"]) for d in by_key.values() if "rest" in d and "grpc" in d]

# Every latency histogram, written or read: integer microseconds, 1 us - 60 s, 3 digits.
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3


def searches_words(repeats: int, most: int | None = None, precision: float | None = None) -> str:
    """sweep.json's ``search`` repeats in words: "2 searches per Config, up to 4 while the 95%
    interval is wider than +-10%", or "1 search per Config" when no more are run for precision."""
    if most is not None and most > repeats and precision is not None:
        return (f"{repeats} searches per Config, up to {most} while the 95% interval is wider than "
                f"+-{precision:.0%}")
    return f"{repeats} search{'es' if repeats != 1 else ''} per Config"
