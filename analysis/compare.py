"""Per-Config differences between two analysed sweeps (e.g. a re-run against its baseline)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import ties
from analysis.analyze import Analysis, analyze
from analysis.errors import ResultsError
from analysis.results import check_schema_line
from formats.results import COMPARE_SCHEMA
from formats.slo import Slo

COMPARED = ("slo_rps", "p99_ms_at_slo", "p99_ms_run", "error_rate", "cost_per_hour", "usd_per_million")


def compare(before: Analysis, after: Analysis) -> pd.DataFrame:
    """One row per config_id in either sweep: before/after values, delta and relative change.

    `presence` is 'both', 'before_only' or 'after_only'; `valid_before`/`valid_after` carry
    validity so a change between an invalid and a valid run is visible. Searched capacities
    also carry their intervals (`capacity_lo/hi_before/after`) and `within_noise`: whether
    the two intervals overlap (the report's tie rule, ``ties.overlaps``), empty when either
    run has no interval.
    """
    keep = ["config_id", "name", "valid", *COMPARED, "capacity_lo", "capacity_hi"]
    b = before.table[keep].rename(columns={c: f"{c}_before" for c in keep[2:]})
    a = after.table[keep].rename(columns={c: f"{c}_after" for c in keep[2:]})
    df = b.merge(a, on="config_id", how="outer", suffixes=("", "_new"), indicator=True)
    df["name"] = df["name"].fillna(df.pop("name_new"))
    df["presence"] = df.pop("_merge").map({"both": "both", "left_only": "before_only", "right_only": "after_only"})
    for c in COMPARED:
        df[f"{c}_delta"] = df[f"{c}_after"] - df[f"{c}_before"]
        base = df[f"{c}_before"].where(df[f"{c}_before"] != 0)
        df[f"{c}_change"] = df[f"{c}_delta"] / base
    df["within_noise"] = [_within_noise(row) for _, row in df.iterrows()]
    order = ["config_id", "name", "presence", "valid_before", "valid_after"]
    for c in COMPARED:
        order += [f"{c}_before", f"{c}_after", f"{c}_delta", f"{c}_change"]
    order += ["capacity_lo_before", "capacity_hi_before", "capacity_lo_after", "capacity_hi_after", "within_noise"]
    return df[order].sort_values("config_id").reset_index(drop=True)


def _interval(row: pd.Series, side: str) -> tuple[float, float] | None:
    lo, hi = row[f"capacity_lo_{side}"], row[f"capacity_hi_{side}"]
    return None if pd.isna(lo) or pd.isna(hi) else (float(lo), float(hi))


def _within_noise(row: pd.Series):
    before, after = _interval(row, "before"), _interval(row, "after")
    return pd.NA if before is None or after is None else ties.overlaps(before, after)


def compare_sweeps(before_dir: Path | str, after_dir: Path | str, *, pricing_csv: Path | str | None = None,
                   slo_p99_ms: float = 1000.0, slo_error_rate: float = 0.01) -> pd.DataFrame:
    """Analyse two results directories under the same SLO and prices, then `compare` them."""
    slo = Slo(p99_ms=slo_p99_ms, error_rate=slo_error_rate)
    return compare_with_baseline(before_dir, analyze(after_dir, pricing_csv=pricing_csv, slo=slo))


def baseline_analysis(baseline_dir: Path | str, after: Analysis) -> Analysis:
    """A baseline directory analysed under `after`'s SLO and prices (so the two compare)."""
    return analyze(baseline_dir, pricing_csv=after.prices.path, slo=after.slo)


def compare_with_baseline(baseline_dir: Path | str, after: Analysis) -> pd.DataFrame:
    """`compare` a baseline directory, analysed under `after`'s SLO and prices, with `after`
    (an analysis already made, e.g. the report's: its runs are not read again)."""
    return compare(baseline_analysis(baseline_dir, after), after)


def write_comparison(diff: pd.DataFrame, path: Path | str) -> None:
    """Write `compare`'s table as compare.csv: the line '# servesweep.compare/1', then the CSV."""
    with Path(path).open("w", encoding="utf-8", newline="") as f:
        f.write(f"# {COMPARE_SCHEMA}\n")
        diff.to_csv(f, index=False, lineterminator="\n")


def read_comparison(path: Path | str) -> pd.DataFrame:
    """compare.csv as written by `write_comparison`; ResultsError naming the file otherwise."""
    path = Path(path)
    check_schema_line(path, COMPARE_SCHEMA)
    try:
        return pd.read_csv(path, skiprows=1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise ResultsError(f"{path}: not a valid comparison CSV ({e})") from e


def _num(value, fmt: str) -> str:
    return "-" if value is None or pd.isna(value) else format(value, fmt)


def format_comparison(df: pd.DataFrame) -> str:
    """A plain-text table of the headline differences, one line per Config: for searched
    capacities their intervals and whether they overlap, else the run's p99."""
    searched = df["within_noise"].notna().any()
    last = f"{ties.CI_LABEL} (req/s)" if searched else "p99 over run (ms)"
    lines = [f"{'config':<28} {'presence':<11} {'req/s at SLO':>24} {last:>40}"]
    for row in df.itertuples(index=False):
        rps = f"{_num(row.slo_rps_before, '.1f')} -> {_num(row.slo_rps_after, '.1f')}"
        change = "" if pd.isna(row.slo_rps_change) else f" ({row.slo_rps_change:+.0%})"
        if searched:
            spans = [f"{_num(getattr(row, f'capacity_lo_{s}'), '.1f')}-{_num(getattr(row, f'capacity_hi_{s}'), '.1f')}"
                     for s in ("before", "after")]
            word = "" if pd.isna(row.within_noise) else (", within noise" if row.within_noise else ", changed")
            last = f"{spans[0]} -> {spans[1]}{word}"
        else:
            p99 = f"{_num(row.p99_ms_run_before, '.0f')} -> {_num(row.p99_ms_run_after, '.0f')}"
            last = p99 + ("" if pd.isna(row.p99_ms_run_change) else f" ({row.p99_ms_run_change:+.0%})")
        lines.append(f"{str(row.name)[:28]:<28} {row.presence:<11} {rps + change:>24} {last:>40}")
    return "\n".join(lines)
