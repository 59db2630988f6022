"""Join every run with its cost and SLO-bounded throughput into one table (one row per Config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from analysis import hdr, pareto
from analysis.costs import Cost, PriceTable, load_prices
from analysis.results import Results, Run, load_results
from analysis.throughput import Sustained, eligible_seconds, sustained_throughput
from formats.slo import Slo

# The table's columns, in order (table.csv and the HTML table use these).
COLUMNS = [
    "config_id", "name", "machine_type", "vcpu", "memory_gb", "nodes", "replicas", "pricing",
    "valid", "validity_reasons", "slo_rps", "slo_window", "p50_ms_at_slo", "p90_ms_at_slo", "p99_ms_at_slo",
    "p99_9_ms_at_slo", "p50_ms_run", "p90_ms_run", "p99_ms_run", "p99_9_ms_run", "max_ms_run", "error_rate",
    "error_classes", "cost_per_hour", "cost_per_day", "cost_per_month", "requests_per_usd", "usd_per_million",
    "pareto", "recommended", "note", "server_kind", "server_version", "image_digest", "run_dir",
]


@dataclass(frozen=True, eq=False)
class RunAnalysis:
    """One run with what was derived from it."""

    run: Run
    seconds: dict[int, HdrHistogram]  # corrected latency per series second
    run_histogram: HdrHistogram  # corrected, eligible seconds (after warm-up, within the schedule)
    uncorrected_histogram: HdrHistogram | None
    sustained: Sustained
    cost: Cost | None
    cost_note: str


@dataclass(frozen=True, eq=False)
class Analysis:
    results: Results
    prices: PriceTable
    slo: Slo
    target_rps: float | None
    runs: tuple[RunAnalysis, ...]
    table: pd.DataFrame
    pareto_ids: tuple[str, ...]
    recommendation: pareto.Recommendation
    unmeasured: tuple[str, ...] = ()  # configs in sweep.json with no run directory

    @property
    def slo_text(self) -> str:
        return self.slo.text()


def _analyze_run(run: Run, prices: PriceTable, slo: Slo) -> RunAnalysis:
    seconds = hdr.by_second(hdr.read_log(run.latency_log))
    kept = set(int(t) for t in eligible_seconds(run.series, warmup_s=run.warmup_s, duration_s=run.duration_s)["t_s"])
    run_hist = hdr.merge(h for t, h in seconds.items() if t in kept)
    unc = None
    if run.uncorrected_log is not None:
        unc_seconds = hdr.by_second(hdr.read_log(run.uncorrected_log))
        unc = hdr.merge(h for t, h in unc_seconds.items() if t in kept)
    sustained = sustained_throughput(run.series, seconds, slo, warmup_s=run.warmup_s, duration_s=run.duration_s)
    cost, note = None, ""
    shape = (run.config or {}).get("shape")
    if not shape:
        note = "not priced: the run has no node shape (bare loadgen run)"
    else:
        try:
            cost = prices.cost(shape)
        except KeyError as e:
            note = f"not priced: {e.args[0]}"
    return RunAnalysis(run=run, seconds=seconds, run_histogram=run_hist, uncorrected_histogram=unc,
                       sustained=sustained, cost=cost, cost_note=note)


def _row(ra: RunAnalysis) -> dict[str, Any]:
    run, s = ra.run, ra.sustained
    cfg = run.config or {}
    shape = cfg.get("shape") or {}
    server = run.record.get("server") or {}
    at = hdr.percentiles_ms(s.window.histogram) if s.window else {}
    over = hdr.percentiles_ms(ra.run_histogram)
    totals = run.record["totals"]
    outcomes = (totals.get("ok") or 0) + (totals.get("errors") or 0)
    classes = {k: v for k, v in (totals.get("error_classes") or {}).items() if v}
    cph = ra.cost.per_hour if ra.cost else None
    per_usd = s.rps * 3600.0 / cph if (cph and s.rps > 0) else None
    notes = [n for n in (ra.cost_note, s.why_none) if n]
    return {
        "config_id": run.id, "name": run.name,
        "machine_type": shape.get("machine_type"), "vcpu": shape.get("vcpu"), "memory_gb": shape.get("memory_gb"),
        "nodes": shape.get("nodes") or 1, "replicas": cfg.get("replicas") or 1, "pricing": shape.get("pricing"),
        "valid": run.valid, "validity_reasons": "; ".join(run.reasons),
        "slo_rps": s.rps, "slo_window": f"{s.window.first_s}-{s.window.last_s} s" if s.window else "",
        "p50_ms_at_slo": at.get("p50"), "p90_ms_at_slo": at.get("p90"), "p99_ms_at_slo": at.get("p99"),
        "p99_9_ms_at_slo": at.get("p99_9"),
        "p50_ms_run": over["p50"], "p90_ms_run": over["p90"], "p99_ms_run": over["p99"],
        "p99_9_ms_run": over["p99_9"], "max_ms_run": over["max"],
        "error_rate": (totals.get("errors") or 0) / outcomes if outcomes else 0.0,
        "error_classes": "|".join(f"{k}:{v / outcomes:.4f}" for k, v in sorted(classes.items())) if outcomes else "",
        "cost_per_hour": cph, "cost_per_day": ra.cost.per_day if ra.cost else None,
        "cost_per_month": ra.cost.per_month if ra.cost else None,
        "requests_per_usd": per_usd, "usd_per_million": 1e6 / per_usd if per_usd else None,
        "pareto": False, "recommended": False, "note": "; ".join(notes),
        "server_kind": server.get("kind"), "server_version": server.get("version"),
        "image_digest": server.get("image_digest"), "run_dir": run.dir.name,
    }


def analyze(results_dir: Path | str, *, pricing_csv: Path | str | None = None, slo: Slo | None = None,
            target_rps: float | None = None) -> Analysis:
    """Read every run under `results_dir`, price it, find its SLO-bounded throughput, pick a winner."""
    slo = slo or Slo()
    results = load_results(results_dir)
    prices = load_prices(pricing_csv)
    runs = tuple(_analyze_run(r, prices, slo) for r in results.runs)
    table = pd.DataFrame([_row(ra) for ra in runs], columns=COLUMNS)
    for col in ("cost_per_hour", "cost_per_day", "cost_per_month", "requests_per_usd", "usd_per_million"):
        table[col] = table[col].astype(float)
    front = pareto.pareto_front(table)
    rec = pareto.recommend(table, target_rps, slo_text=slo.text())
    table["pareto"] = table["config_id"].isin(front)
    table["recommended"] = table["config_id"] == rec.config_id
    table = table.sort_values(["recommended", "valid", "slo_rps"], ascending=[False, False, False],
                              kind="stable").reset_index(drop=True)
    measured = {ra.run.id for ra in runs}
    planned = [c.get("id") or c.get("name") for c in (results.sweep or {}).get("configs") or [] if isinstance(c, dict)]
    unmeasured = tuple(c for c in planned if c and c not in measured)
    return Analysis(results=results, prices=prices, slo=slo, target_rps=target_rps, runs=runs, table=table,
                    pareto_ids=tuple(front), recommendation=rec, unmeasured=unmeasured)
