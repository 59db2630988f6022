"""build_report: analysis -> report/index.html, summary.md, table.csv and figures/*.png."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import facts, figures, html_page, protocols, replicas
from analysis.analyze import Analysis, analyze, method_label
from formats.results import PROTOCOLS_SCHEMA, TABLE_SCHEMA
from formats.slo import Slo

# (column, heading, format); "ci" is capacity_lo–capacity_hi
SUMMARY_COLUMNS = [("name", "config", None), ("method", "method", None), ("valid", "valid", None),
                   ("slo_rps", "req/s in SLO", "{:.1f}"), ("ci", "95% CI", None),
                   ("tied_with_best", "tied with best", None), ("probes", "probes", "{:.0f}"),
                   ("p99_ms_at_slo", "p99 ms @SLO", "{:.0f}"), ("cost_per_hour", "USD/h", "{:.4f}"),
                   ("cost_per_day", "USD/24h", "{:.2f}"), ("usd_per_million", "USD/1M req", "{:.2f}"),
                   ("pareto", "Pareto", None)]


PROTOCOLS_CSV = "protocols.csv"  # REST vs gRPC, when a deployment was measured over both


@dataclass(frozen=True, eq=False)
class Report:
    """Where the report was written and what it concluded."""

    out_dir: Path
    index_html: Path
    summary_md: Path
    table_csv: Path
    figures: tuple[Path, ...]
    analysis: Analysis

    @property
    def recommendation(self) -> str:
        return self.analysis.recommendation.text

    @property
    def recommended_id(self) -> str | None:
        return self.analysis.recommendation.config_id

    @property
    def table(self) -> pd.DataFrame:
        return self.analysis.table


def _md_cell(v, fmt: str | None, column: str = "") -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ("**NO**" if column == "valid" else "no")
    return fmt.format(v) if fmt else str(v).replace("|", "\\|")


def summary_markdown(a: Analysis) -> str:
    lines = [f"# servesweep report — {a.results.sweep_id}", "", f"**Recommendation.** {a.recommendation.text}", "",
             f"SLO: {a.slo_text}. Target: {f'{a.target_rps:g} req/s' if a.target_rps else 'none given'}. "
             f"Pricing: `{a.prices.path.name}`.", "",
             *([f"**Drift.** {a.drift.text()}", ""] if a.drift is not None else []),
             "| " + " | ".join(h for _, h, _ in SUMMARY_COLUMNS) + " |",
             "|" + "---|" * len(SUMMARY_COLUMNS)]
    for r in a.table.to_dict("records"):
        lo, hi = r["capacity_lo"], r["capacity_hi"]
        shown = {**r, "method": method_label(r["method"]),
                 "ci": None if pd.isna(lo) or pd.isna(hi) else f"{lo:.1f}–{hi:.1f}"}
        lines.append("| " + " | ".join(_md_cell(shown[c], f, c) for c, _, f in SUMMARY_COLUMNS) + " |")
    invalid = a.table[~a.table["valid"].astype(bool)]
    if not invalid.empty:
        lines += ["", "Invalid runs (shown, never recommended):"]
        lines += [f"- {r.name} ({r.config_id}): {r.validity_reasons}" for r in invalid.itertuples(index=False)]
    if a.unmeasured:
        lines += ["", "Not measured (in sweep.json, no results): " + ", ".join(a.unmeasured)]
    if not a.protocols.empty:
        lines += ["", *protocols.protocol_markdown(a.protocols)]
    shares = replicas.replica_markdown(a.results.runs)
    lines += ["", *shares] if shares else []
    host = facts.host_rows((a.results.sweep or {}).get("host"))
    if host:
        lines += ["", "| host | |", "|---|---|"] + [f"| {k} | {_md_cell(v, None)} |" for k, v in host]
    lines += ["", "Figures: " + ", ".join(f"`figures/{n}`" for n in figures.names(a)), ""]
    return "\n".join(lines)


def write_table(table: pd.DataFrame, path: Path, schema: str = TABLE_SCHEMA) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(f"# {schema}\n")
        table.to_csv(f, index=False, lineterminator="\n")


def build_report(results_dir: Path | str, *, pricing_csv: Path | str | None = None, slo_p99_ms: float = 1000.0,
                 slo_error_rate: float = 0.01, target_rps: float | None = None, out_dir: Path | str) -> Report:
    """Analyse `results_dir` and write the report into `out_dir` (created if needed).

    Raises analysis.errors.ResultsError (message names the file) for bad or missing input,
    ValueError for a bad SLO or target.
    """
    a = analyze(results_dir, pricing_csv=pricing_csv, slo=Slo(p99_ms=slo_p99_ms, error_rate=slo_error_rate),
                target_rps=target_rps)
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rendered = figures.render_all(a)
    paths = []
    for name, (_, png) in rendered.items():
        (fig_dir / name).write_bytes(png)
        paths.append(fig_dir / name)
    index = out / "index.html"
    index.write_text(html_page.render(a, rendered), encoding="utf-8")
    summary = out / "summary.md"
    summary.write_text(summary_markdown(a), encoding="utf-8")
    table = out / "table.csv"
    write_table(a.table, table)
    if not a.protocols.empty:
        write_table(a.protocols, out / PROTOCOLS_CSV, PROTOCOLS_SCHEMA)
    return Report(out_dir=out, index_html=index, summary_md=summary, table_csv=table, figures=tuple(paths),
                  analysis=a)
