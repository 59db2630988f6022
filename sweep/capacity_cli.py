"""`bazel run //loadgen:capacity -- --target URL ... --slo-p99 1s`: the capacity search
against servers that are already running (no deploy). Thin: the search is
``sweep.capacity``; this prints each probe live and the result, writes the same files as
a sweep's Config, and exits 0 or 1 against ``--require-rps``.
"""

from __future__ import annotations

import json
import sys

import click

from formats.results import RUN_FILE, SWEEP_FILE, SWEEP_SCHEMA, TOOL
from formats.slo import Slo, SloError
from formats.units import UnitError, parse_duration_ms, parse_fraction
from loadgen import flags
from loadgen.options import OptionsError
from loadgen.payload import PayloadError
from sweep import display, provenance
from sweep.capacity import SearchSweep, bodies, run_search
from sweep.endpoints import Endpoint, ExternalBackend
from sweep.loop import SweepError
from sweep.plan import SearchOptions
from sweep.search_flags import method_text, pop_search_flags, search_flags
from sweep.status import is_complete, write_json
from sweep.warmup import WarmupOptions
from tools.python.runpath import user_path


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--target", "targets", multiple=True, required=True,
              help="A TF Serving predict URL (http://HOST:PORT/v1/models/NAME:predict); repeat for the "
                   "replicas of one deployment: the load is spread over them.")
@click.option("--slo-p99", default="1s", show_default=True, help="The SLO's latency bound on p99 (250ms, 1s).")
@click.option("--slo-errors", default="1%", show_default=True, help="The SLO's error-rate bound.")
@click.option("--require-rps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Exit 1 unless the capacity's lower end (95% interval) reaches this rate.")
@click.option("--name", default="", help="A name for the endpoint in the output (default: the model's).")
@click.option("--out", "out_dir", default="results/capacity", show_default=True,
              help="Where the files go: OUT/<endpoint-id>/ (run.json, probes.csv, probes/).")
@search_flags
@flags.generator_flags
def main(targets, slo_p99, slo_errors, require_rps, name, out_dir, **kwargs) -> None:
    """Find the highest rate an already running TF Serving endpoint serves within the SLO:
    constant-rate open-loop probes, each ended once its verdict is statistically clear,
    bracketed and bisected to the resolution, --repeats searches and more (up to --max-repeats)
    while the 95% interval is wider than --precision; the capacity pools every probe."""
    echo = display.Display(sys.stderr)
    try:
        search = SearchOptions.given(pop_search_flags(kwargs))
        load = flags.resolve(flags.pop_generator_flags(kwargs))
        slo = Slo(p99_ms=parse_duration_ms(slo_p99, positive=True), error_rate=parse_fraction(slo_errors))
        endpoint = Endpoint(tuple(targets), name)
        body_for = bodies(load.payload)
        body_for(endpoint.protocol, endpoint.target().model_name)  # a bad payload fails here
    except (SweepError, OptionsError, PayloadError, UnitError, SloError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    out = user_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SWEEP_FILE, {"schema": SWEEP_SCHEMA, "sweep_id": endpoint.id, "name": endpoint.name,
                                  "backend": "external", "slo": slo.to_dict(), "configs": [endpoint.to_record()],
                                  "load": load.to_mapping(), "method": "search", "search": search.record(),
                                  "tool": dict(TOOL), "host": provenance.host_facts()})
    echo.line(f"capacity of {endpoint.name} ({len(endpoint.urls)} target(s)) within {slo.text()} -> {out}")
    echo.line(method_text("search", search, 1, ()))
    how = SearchSweep(out_dir=out, slo=slo, load=load, warmup=WarmupOptions(), search=search, force=True)
    outcomes, interrupted = run_search([endpoint], ExternalBackend(), how, body_for, echo.event, skip=is_complete)
    record = json.loads((out / endpoint.id / RUN_FILE).read_text())
    cap = record["capacity"]
    if cap["rps"] is None:
        echo.line(f"no capacity found: {'; '.join(record['validity']['reasons']) or outcomes[0].error}")
        sys.exit(130 if interrupted else 1)
    echo.line(f"capacity: {cap['rps']:.2f} req/s (95% CI {cap['lo']:.2f}-{cap['hi']:.2f}) within {slo.text()}, "
              f"{record['probes']} probes, {record['duration_s']:.0f} s probed")
    if interrupted:
        sys.exit(130)
    if require_rps is not None:
        ok = cap["lo"] >= require_rps
        echo.line(f"--require-rps {require_rps:g}: {'met' if ok else 'NOT met'} (lower end {cap['lo']:.2f} req/s)")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
