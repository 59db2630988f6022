"""Reading one run directory or a whole sweep directory (docs/results-format.md, schema 1).

A Config directory holds one of two methods (run.json "method", formats.results.METHODS):
"ramp" (the seed's: one run, series.csv and latency.hlog; also a bare run, which has no
"method" key) or "search" (the capacity search: run.json's capacity block and probes.csv,
each probe's own run directory under probes/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import ResultsError
from formats.results import (
    HLOG_FILES,
    METHODS,
    PROBES_COLUMNS,
    PROBES_FILE,
    PROBES_SCHEMA,
    RUN_FILE,
    RUN_SCHEMA,
    SERIES_COLUMNS,
    SERIES_FILE,
    SERIES_SCHEMA,
    SWEEP_FILE,
    SWEEP_SCHEMA,
)

_CAPACITY_KEYS = ("rps", "lo", "hi")
# The methods this reader knows (unpacking fails loudly when formats gains one). A run.json
# without "method" is a ramp: a bare run, or the seed's method.
SEARCH, RAMP = METHODS
# run.json keys each method requires (a search's totals may be absent: summed from probes.csv)
_RUN_KEYS = {RAMP: ("config", "profile", "started_at", "duration_s", "totals", "validity"),
             SEARCH: ("config", "started_at", "duration_s", "validity", "capacity")}


@dataclass(frozen=True, eq=False)
class Run:
    """One measured configuration: its run.json record, and per method its per-second
    series and log paths (ramp) or its probes (search; series empty, no logs)."""

    dir: Path
    record: dict[str, Any]
    series: pd.DataFrame
    latency_log: Path | None
    uncorrected_log: Path | None
    method: str = RAMP
    probes: pd.DataFrame | None = None  # probes.csv (search only)

    @property
    def is_search(self) -> bool:
        return self.method == SEARCH

    @property
    def capacity(self) -> dict[str, Any]:
        """run.json's capacity block ({} for a ramp): rps, lo, hi (None when not found)."""
        return self.record.get("capacity") or {}

    @property
    def best_pass(self) -> dict[str, Any] | None:
        """The highest passing probe (search): rate, p50_ms, p90_ms, p99_ms, dir."""
        return self.record.get("best_pass") or None

    @property
    def totals(self) -> dict[str, Any]:
        """run.json's totals; for a search without them, summed over its valid probes."""
        if self.record.get("totals") or self.probes is None:
            return self.record.get("totals") or {}
        valid = self.probes[self.probes["valid"] == 1]
        classes: dict[str, int] = {}
        for cell in valid["error_classes"]:
            for k, v in parse_error_classes(cell).items():
                classes[k] = classes.get(k, 0) + v
        errors = int(valid["errors"].sum())
        return {"ok": int(valid["requests"].sum()) - errors, "errors": errors, "error_classes": classes}

    @property
    def config(self) -> dict[str, Any] | None:
        return self.record.get("config")

    @property
    def id(self) -> str:
        return (self.config or {}).get("id") or self.dir.name

    @property
    def name(self) -> str:
        return (self.config or {}).get("name") or self.dir.name

    @property
    def valid(self) -> bool:
        return bool(self.record["validity"].get("valid")) and bool(self.record.get("complete", True))

    @property
    def reasons(self) -> tuple[str, ...]:
        reasons = list(self.record["validity"].get("reasons") or [])
        if not self.record.get("complete", True) and not any("complete" in r for r in reasons):
            reasons.append("run incomplete (stopped early)")
        return tuple(reasons)

    @property
    def warmup_s(self) -> float:
        return float(self.record.get("warmup_s") or 0.0)

    @property
    def duration_s(self) -> float:
        """Length of the schedule (profile.duration_s), else the run's recorded duration."""
        profile = self.record.get("profile") or {}
        return float(profile.get("duration_s") or self.record.get("duration_s") or 0.0)


@dataclass(frozen=True, eq=False)
class Results:
    """Every run found under a results directory, plus sweep.json when present."""

    root: Path
    runs: tuple[Run, ...]
    sweep: dict[str, Any] | None

    @property
    def sweep_id(self) -> str:
        return (self.sweep or {}).get("sweep_id") or self.root.name


def _read_json(path: Path, schema: str) -> dict[str, Any]:
    if not path.is_file():
        raise ResultsError(f"{path}: file missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    found = data.get("schema")
    if found != schema:
        raise ResultsError(f"{path}: unknown schema {found!r} (this reader understands {schema!r})")
    return data


def check_schema_line(path: Path, schema: str) -> None:
    """Raise ResultsError unless the CSV at ``path`` starts with the line ``# <schema>``."""
    if not path.is_file():
        raise ResultsError(f"{path}: file missing")
    with path.open(encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    if first != f"# {schema}":
        raise ResultsError(f"{path}: unknown schema line {first!r} (expected '# {schema}')")


def read_series(path: Path) -> pd.DataFrame:
    """series.csv as a DataFrame (one row per second), checked against schema 1."""
    check_schema_line(path, SERIES_SCHEMA)
    try:
        df = pd.read_csv(path, skiprows=1, dtype={"error_classes": str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise ResultsError(f"{path}: not a valid series CSV ({e})") from e
    missing = [c for c in SERIES_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}")
    df["error_classes"] = df["error_classes"].fillna("")
    return df


def parse_error_classes(cell: str) -> dict[str, int]:
    """'http_503:3|timeout:1' -> {'http_503': 3, 'timeout': 1}."""
    out: dict[str, int] = {}
    for part in filter(None, str(cell or "").split("|")):
        name, _, count = part.partition(":")
        out[name] = out.get(name, 0) + int(count or 0)
    return out


def read_probes(path: Path) -> pd.DataFrame:
    """probes.csv as a DataFrame (one row per probe), checked against its schema line and columns."""
    check_schema_line(path, PROBES_SCHEMA)
    text = {c: str for c in ("config", "error_classes", "verdict", "reason", "dir")}
    try:
        df = pd.read_csv(path, skiprows=1, dtype=text, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise ResultsError(f"{path}: not a valid probes CSV ({e})") from e
    missing = [c for c in PROBES_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}")
    for c in text:
        df[c] = df[c].fillna("")
    for c in ("marginal", "valid", "requests", "over", "errors"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype(int)
    return df


def _check_record(run_path: Path, record: dict[str, Any]) -> str:
    """The run's method, after checking the keys that method requires."""
    method = record.get("method") or RAMP
    if method not in METHODS:
        raise ResultsError(f"{run_path}: unknown method {method!r} (this reader understands "
                           f"{', '.join(METHODS)})")
    missing = [k for k in _RUN_KEYS[method] if k not in record]
    if missing:
        raise ResultsError(f"{run_path}: missing keys {', '.join(missing)}")
    objects = ("validity", "capacity") + (("totals",) if method == RAMP or record.get("totals") else ())
    for key in objects:
        if key in record and not isinstance(record[key], dict):
            raise ResultsError(f"{run_path}: {key!r} must be an object")
    if method == SEARCH:
        cap = record["capacity"]
        bad = [k for k in _CAPACITY_KEYS if not (cap.get(k) is None or _is_number(cap.get(k)))]
        if bad or any(k not in cap for k in _CAPACITY_KEYS):
            raise ResultsError(f"{run_path}: 'capacity' needs numbers (or null) rps, lo and hi")
        if record.get("best_pass") is not None and not isinstance(record["best_pass"], dict):
            raise ResultsError(f"{run_path}: 'best_pass' must be an object or null")
    return method


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_run(run_dir: Path | str) -> Run:
    """Read one run directory; raises ResultsError naming the file at fault."""
    run_dir = Path(run_dir)
    run_path = run_dir / RUN_FILE
    record = _read_json(run_path, RUN_SCHEMA)
    method = _check_record(run_path, record)
    if method == SEARCH:
        probes = read_probes(run_dir / PROBES_FILE)
        return Run(dir=run_dir, record=record, series=pd.DataFrame(columns=list(SERIES_COLUMNS)),
                   latency_log=None, uncorrected_log=None, method=method, probes=probes)
    series = read_series(run_dir / SERIES_FILE)
    latency = run_dir / HLOG_FILES["corrected"]
    if not latency.is_file():
        raise ResultsError(f"{latency}: file missing")
    uncorrected = run_dir / HLOG_FILES["uncorrected"]
    return Run(dir=run_dir, record=record, series=series, latency_log=latency,
               uncorrected_log=uncorrected if uncorrected.is_file() else None)


def load_results(results_dir: Path | str) -> Results:
    """A single run directory (has run.json) or a sweep directory of run directories."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultsError(f"{root}: results directory missing")
    sweep_path = root / SWEEP_FILE
    sweep = _read_json(sweep_path, SWEEP_SCHEMA) if sweep_path.exists() else None
    if (root / RUN_FILE).exists():
        return Results(root=root, runs=(load_run(root),), sweep=sweep)
    runs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / RUN_FILE).exists():
            runs.append(load_run(sub))
        elif any((sub / f).exists() for f in (SERIES_FILE, PROBES_FILE, HLOG_FILES["corrected"])):
            raise ResultsError(f"{sub / RUN_FILE}: file missing (the directory holds other result files)")
    if not runs:
        raise ResultsError(f"{root}: no runs found (expected {RUN_FILE} here or in its subdirectories)")
    ids = [r.id for r in runs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ResultsError(f"{root}: several runs share config id {', '.join(dupes)}")
    return Results(root=root, runs=tuple(runs), sweep=sweep)
