"""Join every run with its cost and SLO-bounded throughput into one table (one row per Config).

Two methods feed the same columns: a ramp's (the seed's) throughput within the SLO is its
best 10-s window (analysis.throughput); a search's is its capacity (analysis.search), with
the interval a ramp does not have. `slo_rps` is the figure costs and the recommendation use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hdrh.histogram import HdrHistogram

from analysis import hdr, pareto, protocols, ties
from analysis.costs import Cost, PriceTable, load_prices
from analysis.drift import Drift, sweep_drift
from analysis.results import RAMP, SEARCH, Results, Run, load_results
from analysis.search import SearchAnswer, search_answer
from analysis.throughput import Sustained, eligible_seconds, sustained_throughput
from formats.slo import Slo

# The table's columns, in order (table.csv and the HTML table use these).
COLUMNS = [
    "config_id", "name", "machine_type", "vcpu", "memory_gb", "nodes", "replicas", "pricing", "protocol",
    "payload_bytes", "valid", "validity_reasons", "method", "slo_rps", "capacity_rps", "capacity_lo", "capacity_hi",
    "tied_with_best", "probes", "slo_window", "p50_ms_at_slo", "p90_ms_at_slo", "p99_ms_at_slo",
    "p99_9_ms_at_slo", "p50_ms_run", "p90_ms_run", "p99_ms_run", "p99_9_ms_run", "max_ms_run", "error_rate",
    "error_classes", "cost_per_hour", "cost_per_day", "cost_per_month", "requests_per_usd", "usd_per_million",
    "pareto", "recommended", "note", "server_kind", "server_version", "image_digest", "run_dir",
]


METHOD_LABELS = {RAMP: "the seed's method (ramp)", SEARCH: "capacity search"}


def method_label(method: str) -> str:
    """How the report names a measurement method."""
    return METHOD_LABELS.get(method, method)


@dataclass(frozen=True, eq=False)
class RunAnalysis:
    """One run with what was derived from it: `sustained` for a ramp, `search` for a search."""

    run: Run
    seconds: dict[int, HdrHistogram]  # corrected latency per series second (ramp; empty for a search)
    # corrected: a ramp's eligible seconds (after warm-up, within the schedule); a search's
    # highest passing probe (empty when its logs are absent)
    run_histogram: HdrHistogram
    uncorrected_histogram: HdrHistogram | None
    sustained: Sustained | None
    cost: Cost | None
    cost_note: str
    search: SearchAnswer | None = None


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
    # REST vs gRPC per deployment measured over both (analysis.protocols); empty if none
    protocols: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=protocols.PROTOCOL_COLUMNS))
    # the servers' CPU per request over the sweep (analysis.drift; None: not measured here)
    drift: Drift | None = None

    @property
    def slo_text(self) -> str:
        return self.slo.text()


def _cost(run: Run, prices: PriceTable) -> tuple[Cost | None, str]:
    cost, note = None, ""
    shape = (run.config or {}).get("shape")
    if not shape:
        note = "not priced: the run has no node shape (bare loadgen run)"
    else:
        try:
            cost = prices.cost(shape)
        except KeyError as e:
            note = f"not priced: {e.args[0]}"
    return cost, note


def _analyze_run(run: Run, prices: PriceTable, slo: Slo) -> RunAnalysis:
    cost, note = _cost(run, prices)
    if run.is_search:
        found = search_answer(run, slo)
        return RunAnalysis(run=run, seconds={}, run_histogram=found.best_histogram or hdr.new_histogram(),
                           uncorrected_histogram=found.best_uncorrected, sustained=None, cost=cost,
                           cost_note=note, search=found)
    seconds = hdr.by_second(hdr.read_log(run.latency_log))
    kept = set(int(t) for t in eligible_seconds(run.series, warmup_s=run.warmup_s, duration_s=run.duration_s)["t_s"])
    run_hist = hdr.merge(h for t, h in seconds.items() if t in kept)
    unc = None
    if run.uncorrected_log is not None:
        unc_seconds = hdr.by_second(hdr.read_log(run.uncorrected_log))
        unc = hdr.merge(h for t, h in unc_seconds.items() if t in kept)
    sustained = sustained_throughput(run.series, seconds, slo, warmup_s=run.warmup_s, duration_s=run.duration_s)
    return RunAnalysis(run=run, seconds=seconds, run_histogram=run_hist, uncorrected_histogram=unc,
                       sustained=sustained, cost=cost, cost_note=note)


def _ramp_fields(ra: RunAnalysis) -> dict[str, Any]:
    """The method-specific columns of a ramp: its best window, whole-run percentiles."""
    s = ra.sustained
    at = hdr.percentiles_ms(s.window.histogram) if s.window else {}
    over = hdr.percentiles_ms(ra.run_histogram)
    return {"slo_rps": s.rps, "capacity_rps": s.rps, "capacity_lo": None, "capacity_hi": None, "probes": None,
            "slo_window": f"{s.window.first_s}-{s.window.last_s} s" if s.window else "",
            "p50_ms_at_slo": at.get("p50"), "p90_ms_at_slo": at.get("p90"), "p99_ms_at_slo": at.get("p99"),
            "p99_9_ms_at_slo": at.get("p99_9"),
            "p50_ms_run": over["p50"], "p90_ms_run": over["p90"], "p99_ms_run": over["p99"],
            "p99_9_ms_run": over["p99_9"], "max_ms_run": over["max"], "why_none": s.why_none}


def _search_fields(ra: RunAnalysis) -> dict[str, Any]:
    """The method-specific columns of a search: its capacity, interval and highest passing probe."""
    f = ra.search
    best = f.best_pass or {}
    p99_9 = hdr.percentiles_ms(f.best_histogram)["p99_9"] if f.best_histogram is not None else None
    return {"slo_rps": f.rps, "capacity_rps": f.measured_rps, "capacity_lo": f.lo, "capacity_hi": f.hi,
            "probes": f.probes, "slo_window": best.get("dir") or "",
            "p50_ms_at_slo": best.get("p50_ms"), "p90_ms_at_slo": best.get("p90_ms"),
            "p99_ms_at_slo": best.get("p99_ms"), "p99_9_ms_at_slo": p99_9,
            "p50_ms_run": None, "p90_ms_run": None, "p99_ms_run": None, "p99_9_ms_run": None, "max_ms_run": None,
            "why_none": f.why_none}


def _row(ra: RunAnalysis) -> dict[str, Any]:
    run = ra.run
    cfg = run.config or {}
    shape = cfg.get("shape") or {}
    server = run.record.get("server") or {}
    fields = _search_fields(ra) if run.is_search else _ramp_fields(ra)
    rps = fields["slo_rps"]
    totals = run.totals
    outcomes = (totals.get("ok") or 0) + (totals.get("errors") or 0)
    classes = {k: v for k, v in (totals.get("error_classes") or {}).items() if v}
    cph = ra.cost.per_hour if ra.cost else None
    per_usd = rps * 3600.0 / cph if (cph and rps > 0) else None
    notes = [n for n in (ra.cost_note, fields.pop("why_none")) if n]
    return {
        "config_id": run.id, "name": run.name,
        "machine_type": shape.get("machine_type"), "vcpu": shape.get("vcpu"), "memory_gb": shape.get("memory_gb"),
        "nodes": shape.get("nodes") or 1, "replicas": cfg.get("replicas") or 1, "pricing": shape.get("pricing"),
        "protocol": protocols.protocol_of(run), "payload_bytes": (run.record.get("payload") or {}).get("bytes"),
        "valid": run.valid, "validity_reasons": "; ".join(run.reasons), "method": run.method,
        "tied_with_best": False, **fields,
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
    for col in ("cost_per_hour", "cost_per_day", "cost_per_month", "requests_per_usd", "usd_per_million",
                "capacity_rps", "capacity_lo", "capacity_hi"):
        table[col] = table[col].astype(float)
    table["probes"] = table["probes"].astype("Int64")
    rows = pareto.eligible(table)
    table["tied_with_best"] = table["config_id"].isin(rows.loc[ties.tied_with_best(rows), "config_id"])
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
                    pareto_ids=tuple(front), recommendation=rec, unmeasured=unmeasured,
                    protocols=protocols.protocol_table(results.runs, table), drift=sweep_drift(results.runs))
