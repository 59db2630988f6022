"""Reading one run directory or a whole sweep directory (docs/results-format.md, schema 1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import ResultsError
from formats.results import (
    HLOG_FILES,
    RUN_FILE,
    RUN_SCHEMA,
    SERIES_COLUMNS,
    SERIES_FILE,
    SERIES_SCHEMA,
    SWEEP_FILE,
    SWEEP_SCHEMA,
)

_RUN_KEYS = ("config", "profile", "started_at", "duration_s", "totals", "validity")


@dataclass(frozen=True, eq=False)
class Run:
    """One measured configuration: its run.json record, per-second series and log paths."""

    dir: Path
    record: dict[str, Any]
    series: pd.DataFrame
    latency_log: Path
    uncorrected_log: Path | None

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


def load_run(run_dir: Path | str) -> Run:
    """Read one run directory; raises ResultsError naming the file at fault."""
    run_dir = Path(run_dir)
    run_path = run_dir / RUN_FILE
    record = _read_json(run_path, RUN_SCHEMA)
    missing = [k for k in _RUN_KEYS if k not in record]
    if missing:
        raise ResultsError(f"{run_path}: missing keys {', '.join(missing)}")
    if not isinstance(record["validity"], dict) or not isinstance(record["totals"], dict):
        raise ResultsError(f"{run_path}: 'validity' and 'totals' must be objects")
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
        elif (sub / SERIES_FILE).exists() or (sub / HLOG_FILES["corrected"]).exists():
            raise ResultsError(f"{sub / RUN_FILE}: file missing (the directory holds other result files)")
    if not runs:
        raise ResultsError(f"{root}: no runs found (expected {RUN_FILE} here or in its subdirectories)")
    ids = [r.id for r in runs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ResultsError(f"{root}: several runs share config id {', '.join(dupes)}")
    return Results(root=root, runs=tuple(runs), sweep=sweep)
