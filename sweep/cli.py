"""`bazel run //loadgen:sweep` (= `//sweep:sweep`): run a sweep end to end and print the
recommendation.

Thin: resolves paths and options, then calls the library (``sweep.specs`` for which
sweep, ``sweep.models`` for the model, ``sweep.backends`` for where, ``sweep.loop`` to
measure, ``analysis`` to report) and shows progress. Library errors become one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import click

from analysis.compare import baseline_analysis, compare, format_comparison, write_comparison
from analysis.drift import machine_change
from analysis.report import build_report
from deploy.generators import JOB_NAME
from deploy.target import DeployError
from formats.agent import AgentCallError
from formats.results import METHODS
from formats.units import UnitError, parse_duration
from loadgen import flags
from loadgen.options import FIELDS, OptionsError
from loadgen.payload import PayloadError
from sweep import backends, display, models, specs
from sweep import loop as sweep_mod
from sweep.agents import generators_up
from sweep.plan import fit_budget
from sweep.search_flags import method_text, pop_search_flags, search_flags
from sweep.warmup import WarmupOptions
from tools.python.runpath import user_path

DEFAULT_SPEC = "deploy/sweeps/local.yaml"


def _bundled(relpath: str) -> Path:
    """A file shipped with the tool (runfiles under bazel run, the checkout otherwise)."""
    here = Path(relpath)
    return here.resolve() if here.exists() else user_path(relpath)


def _repo() -> Path | None:
    root = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if root:
        return Path(root)
    return Path(__file__).resolve().parent.parent


HELP = f"""Find the cheapest TF Serving deployment that meets the SLO: deploy, warm up, load and
tear down every Config of a sweep spec, then write the report and print the recommendation.

The load generator's options (--payload ... --priority) may also be set in the spec's
`load:` section ({", ".join(f.key for f in FIELDS)}); a flag wins. Durations are
250ms, 1.5s, 5m or 1h; a bare number is seconds."""


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sweep", "spec_path", default=None, help=f"Sweep spec YAML. Default: {DEFAULT_SPEC}.")
@click.option("--backend", type=click.Choice(backends.KINDS), default=None,
              help="Where Configs run. Default: the spec's `backend`.")
@click.option("--kube-context", default=None, help="kubeconfig context (k8s backend).")
@click.option("--endpoint", default=None,
              help=f"k8s without --generators: how this machine reaches the Service: {backends.DEFAULT_ENDPOINT} "
                   "(the default), http://HOST:PORT, or port-forward (one pod: refused for a Config of several "
                   "replicas).")
@click.option("--generators", "generator_count", type=click.IntRange(min=0), default=None,
              help="k8s: send the load from N generator agents inside the cluster (an Indexed Job, created "
                   "once, deleted at the end), to every replica through a headless Service's DNS name. "
                   "Default: none (a --rerun: as recorded).")
@click.option("--generator-image", default=None, metavar="REF",
              help="k8s: the agents' image, REPO@sha256:... (default: the image lock's servesweep-loadgen).")
@click.option("--allow-tags", is_flag=True, help="k8s: accept an image not pinned by digest.")
@click.option("--profile", type=click.Choice(specs.PROFILES), default="spec", show_default=True,
              help="Load profile: the spec's, or the seed study's full ramp (150 users, +1/s, 5 min).")
@click.option("--out", "out", default="results", show_default=True,
              help="Results root; the sweep goes to OUT/<sweep-id>/.")
@click.option("--models", default="models", show_default=True, help="Model base directory (exported if missing).")
@click.option("--model-name", default=None, help="Override the spec's serving.model_name.")
@click.option("--model-arch", type=click.Choice(models.ARCHS), default="resnet50", show_default=True,
              help="Architecture to export when the model is missing.")
@click.option("--force", is_flag=True, help="Re-measure Configs that already have results.")
@click.option("--rerun", default=None, help="Repeat the sweep recorded in this results directory into a new one.")
@click.option("--list", "list_only", is_flag=True, help="Print the expanded Configs and exit.")
@click.option("--pricing", default=None, help="Cost table CSV for the report (default: GCP E2 us-central1).")
@click.option("--target-rps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Traffic to provision for: the report recommends the cheapest Config that serves it.")
@click.option("--no-report", is_flag=True, help="Measure only; run //analysis:report later.")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="search (default): each Config's capacity from constant-rate probes with a statistical "
                   "verdict; ramp: the seed study's method, one run of the spec's profile per Config.")
@search_flags
@click.option("--budget", default=None,
              help="Bound the search's time (e.g. 20m): fewer repeats, then a coarser resolution, then "
                   "shorter probes, as needed; says what it gave up.")
@flags.generator_flags
def main(spec_path, backend, kube_context, endpoint, generator_count, generator_image, allow_tags, profile, out,
         models, model_name, model_arch, force, rerun, list_only, pricing, target_rps, no_report, method, budget,
         **generator) -> None:
    try:
        search = pop_search_flags(generator)
        _main(spec_path, backend, kube_context, endpoint, allow_tags, profile, out, models_dir=models,
              model_name=model_name, model_arch=model_arch, force=force, rerun=rerun, list_only=list_only,
              pricing=pricing, target_rps=target_rps, no_report=no_report,
              given=flags.pop_generator_flags(generator), method=method, search=search,
              budget_s=parse_duration(budget, positive=True) if budget else None,
              generators=(generator_count, generator_image))
    except (sweep_mod.SweepError, OptionsError, PayloadError, UnitError, DeployError, AgentCallError) as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt:
        click.echo("stopped by Ctrl-C", err=True)
        sys.exit(130)


def _main(spec_path, backend, kube_context, endpoint, allow_tags, profile, out, *, models_dir, model_name, model_arch,
          force, rerun, list_only, pricing, target_rps, no_report, given, method, search, budget_s,
          generators=(None, None)) -> None:
    echo = display.Display(sys.stderr)
    recorded = None
    if rerun:
        sweep, recorded = specs.load_recorded(user_path(rerun))
    else:
        sweep = specs.load_spec(user_path(spec_path) if spec_path else _bundled(DEFAULT_SPEC), profile, model_name)
    kind = backends.backend_kind(sweep, backend)
    recorded_agents = (recorded or {}).get("generators") or {}
    count, image = generators[0] if generators[0] is not None else recorded_agents.get("count", 0), generators[1]
    endpoint = backends.check_generators(kind, count, endpoint)
    agents_spec = backends.generator_spec(sweep, count, image, allow_tags=allow_tags,
                                          recorded=recorded_agents) if count else None
    load = specs.load_options(sweep, given, recorded)
    method, search_options = specs.method_options(profile, method, search, recorded)
    given_up: list[str] = []
    if budget_s is not None and method == "search":
        search_options, given_up = fit_budget(len(sweep.configs), search_options, budget_s)
    if list_only:
        for c in sweep.configs:
            click.echo(f"{c.id}  {c.name}  replicas={c.replicas} cpu={c.cpu} "
                       f"profile={c.profile['kind']} {c.profile['duration_s']:g}s")
        return

    root = user_path(out)
    out_dir = root / (f"{sweep.id}-rerun-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}" if rerun else sweep.id)
    models_path = user_path(models_dir)
    if kind == "local":
        models.ensure_model(models_path, sweep.configs[0].serving.model_name, model_arch, echo.line)
    lock = _bundled("requirements_lock.txt")
    options = sweep_mod.SweepOptions(out_dir=out_dir, load=load, force=force, warmup=WarmupOptions(),
                                     lock_path=lock if lock.is_file() else None, repo=_repo(),
                                     method=method, search=search_options, given_up=tuple(given_up))
    echo.line(f"sweep {sweep.name} ({sweep.id}): {len(sweep.configs)} Configs, backend {kind}, "
              f"SLO {sweep.slo.text()} -> {out_dir}")
    echo.line(method_text(method, search_options, len(sweep.configs), given_up))
    target = backends.make_backend(sweep, kind, models=models_path, workdir=root / ".work" / out_dir.name,
                                   kube_context=kube_context, endpoint=endpoint, allow_tags=allow_tags)
    job = backends.generator_job(sweep, target, agents_spec) if agents_spec else None
    try:
        if job is None:
            outcome = sweep_mod.run_sweep(sweep, target, options, on_event=echo.event)
        else:
            echo.line(f"generators: {count} agents ({job.job.image}), Job {JOB_NAME} in namespace {job.namespace}; "
                      "waiting for every agent ...")
            with generators_up(job, on_problem=echo.line) as agents:
                echo.line(f"generators: {count} agents ready")
                outcome = sweep_mod.run_sweep(sweep, target, options, on_event=echo.event, agents=agents)
    finally:
        with contextlib.suppress(Exception):
            target.teardown()
    echo.done(outcome)
    if no_report or not any(o.status in ("done", "skipped") for o in outcome.outcomes):
        if outcome.interrupted:
            sys.exit(130)
        return
    report = build_report(out_dir, pricing_csv=user_path(pricing) if pricing else None,
                          slo_p99_ms=sweep.slo.p99_ms, slo_error_rate=sweep.slo.error_rate,
                          target_rps=target_rps, out_dir=out_dir / "report")
    if rerun:
        baseline = baseline_analysis(user_path(rerun), report.analysis)
        diff = compare(baseline, report.analysis)
        write_comparison(diff, out_dir / "report" / "compare.csv")
        echo.line(f"compared with {user_path(rerun)}:\n{format_comparison(diff)}")
        machine = machine_change(baseline.results.runs, report.analysis.results.runs)
        if machine is not None:
            echo.line(machine.text())
    echo.report(report, out_dir / "report")
    if outcome.interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
