"""CLI: bazel run //analysis:report -- RESULTS_DIR [--pricing CSV] [--slo-p99 1s] [--slo-errors 1%]
[--target-rps N] [--out DIR] [--compare BASELINE_DIR]"""

from __future__ import annotations

import sys

import click

from analysis.compare import compare_with_baseline, format_comparison, write_comparison
from analysis.errors import ResultsError
from analysis.report import build_report
from formats import units
from tools.python.runpath import user_path


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("results_dir")
@click.option("--pricing", "pricing", default=None, metavar="CSV",
              help="Pricing CSV (servesweep.pricing/1); default: bundled GCP E2 us-central1 rates.")
@click.option("--slo-p99", default="1s", show_default=True, help=f"p99 latency bound: {units.DURATION_HELP}.")
@click.option("--slo-errors", default="1%", show_default=True, help="Error-rate bound (e.g. 1%, 0.005).")
@click.option("--target-rps", type=float, default=None, help="Traffic to serve; recommend the cheapest way.")
@click.option("--out", "out", default=None, metavar="DIR", help="Report directory [default: RESULTS_DIR/report].")
@click.option("--compare", "baseline", default=None, metavar="DIR",
              help="Also compare with another sweep's results (e.g. the one this re-ran): compare.csv.")
def main(results_dir: str, pricing: str | None, slo_p99: str, slo_errors: str, target_rps: float | None,
         out: str | None, baseline: str | None) -> None:
    """Analyse RESULTS_DIR (a sweep or one run) and write index.html, summary.md, table.csv, figures/."""
    try:
        p99_ms, err = units.parse_duration_ms(slo_p99, positive=True), units.parse_fraction(slo_errors)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if target_rps is not None and target_rps <= 0:
        raise click.BadParameter(f"--target-rps must be positive, got {target_rps:g}")
    results = user_path(results_dir)
    out_dir = user_path(out) if out else results / "report"
    try:
        report = build_report(results, pricing_csv=user_path(pricing) if pricing else None, slo_p99_ms=p99_ms,
                              slo_error_rate=err, target_rps=target_rps, out_dir=out_dir)
        diff = None
        if baseline:
            diff = compare_with_baseline(user_path(baseline), report.analysis)
            write_comparison(diff, out_dir / "compare.csv")
    except (ResultsError, ValueError) as e:
        click.echo(f"report: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("report: interrupted", err=True)
        sys.exit(130)
    if diff is not None:
        click.echo(format_comparison(diff))
        click.echo(f"comparison: {out_dir / 'compare.csv'}")
    click.echo(report.recommendation)
    click.echo(f"report: {report.index_html}")


if __name__ == "__main__":
    main()
