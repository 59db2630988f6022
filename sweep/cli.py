"""`bazel run //loadgen:sweep`: run a sweep end to end and print the recommendation.

Thin: resolves paths and options, builds the backend, calls ``loadgen.sweep.run_sweep``
and ``analysis.build_report``, and shows progress.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

from loadgen import display
from loadgen import sweep as sweep_mod
from loadgen.transport import TRANSPORTS
from loadgen.warmup import WarmupOptions
from tools.python.runpath import user_path

DEFAULT_SPEC = "deploy/sweeps/local.yaml"
# The seed study's load: Locust, 150 users, +1 user/s, constant(1) wait, 5 minutes.
SEED_PROFILE = {"kind": "ramp", "users": 150, "spawn_rate": 1.0, "per_user_rps": 1.0, "duration_s": 300.0,
                "arrivals": "uniform", "seed": 0, "rate": None, "steps": None}


def _bundled(relpath: str) -> Path:
    """A file shipped with the tool (runfiles under bazel run, the checkout otherwise)."""
    here = Path(relpath)
    return here.resolve() if here.exists() else user_path(relpath)


def _repo() -> Path | None:
    root = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if root:
        return Path(root)
    return Path(__file__).resolve().parent.parent


def load_spec(path: Path, profile: str, model_name: str | None):
    from deploy import spec as spec_mod

    sweep = spec_mod.load_sweep(path)
    if profile == "seed" or model_name:
        doc = json.loads(json.dumps(sweep.spec))
        if profile == "seed":
            doc["profile"] = {k: v for k, v in SEED_PROFILE.items() if v is not None and k != "duration_s"}
            doc["profile"]["duration"] = f"{SEED_PROFILE['duration_s']:.0f}s"
        if model_name:
            doc.setdefault("serving", {})["model_name"] = model_name
        sweep = spec_mod.parse_sweep(doc, source=str(path), base_dir=path.parent)
    return sweep


def ensure_model(models: Path, name: str, arch: str, echo) -> None:
    """Export the model into ``models/name/1`` unless a version directory is there."""
    model_dir = models / name
    if model_dir.is_dir() and any(p.name.isdigit() for p in model_dir.iterdir()):
        return
    echo(f"model {name!r} not found under {models}: exporting {arch} (random weights) ...")
    export = Path("model/export")
    cmd = [str(export)] if export.exists() else [sys.executable, "-m", "model.export"]
    cmd += ["--out", str(models), "--name", name, "--arch", arch]
    t0 = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise click.ClickException(f"model export failed:\n{tail}")
    echo(f"exported {name} in {time.monotonic() - t0:.0f} s")


def make_backend(sweep, backend: str, models: Path, workdir: Path, kube_context: str | None,
                 endpoint: str, allow_tags: bool):
    if backend == "local":
        from deploy.local import LocalBackend

        # TF Serving's --model_base_path is the model's own directory (holding version dirs).
        return LocalBackend(model_base_path=models / sweep.configs[0].serving.model_name, workdir=workdir)
    from kubernetes import config as kube_config

    from deploy.cluster import ClusterBackend

    try:
        api = kube_config.new_client_from_config(context=kube_context)
    except Exception as err:  # kubeconfig missing or context unknown: say so plainly
        raise click.ClickException(f"cannot load kubeconfig (context {kube_context or 'current'}): {err}") from None
    return ClusterBackend(api, options=sweep.cluster, work_dir=workdir, endpoint=endpoint, allow_tags=allow_tags)


def _rerun_spec(rerun: Path):
    from deploy import spec as spec_mod

    try:
        recorded = json.loads((rerun / "sweep.json").read_text())
    except (OSError, ValueError) as err:
        raise click.ClickException(f"{rerun / 'sweep.json'}: cannot read the recorded sweep: {err}") from None
    if recorded.get("schema") != sweep_mod.SWEEP_SCHEMA:
        raise click.ClickException(f"{rerun / 'sweep.json'}: unknown schema {recorded.get('schema')!r}")
    sweep = spec_mod.parse_sweep(recorded["spec"], source=recorded.get("source") or str(rerun))
    before = [c["id"] for c in recorded["configs"]]
    now = [c.id for c in sweep.configs]
    if before != now:
        changed = sorted(set(before) ^ set(now))
        raise click.ClickException(
            "the recorded sweep no longer expands to the same Configs (image lock or tool changed): "
            + ", ".join(changed))
    return sweep, recorded


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sweep", "spec_path", default=None, help=f"Sweep spec YAML. Default: {DEFAULT_SPEC}.")
@click.option("--backend", type=click.Choice(["local", "k8s"]), default=None,
              help="Where Configs run. Default: the spec's `backend`.")
@click.option("--kube-context", default=None, help="kubeconfig context (k8s backend).")
@click.option("--endpoint", default="loadbalancer", show_default=True,
              help="k8s: how to reach the Service: loadbalancer, port-forward or http://HOST:PORT.")
@click.option("--allow-tags", is_flag=True, help="k8s: accept an image not pinned by digest.")
@click.option("--profile", type=click.Choice(["spec", "seed"]), default="spec", show_default=True,
              help="Load profile: the spec's, or the seed study's full ramp (150 users, +1/s, 5 min).")
@click.option("--payload", default="b64", show_default=True,
              help="b64: a JPEG/PNG for serving_bytes (default: JSON parsing is then not what is measured); "
                   "tensor: the seed study's JSON pixel lists; file:PATH: a raw body.")
@click.option("--max-in-flight", default=256, show_default=True, type=click.IntRange(1))
@click.option("--transport", type=click.Choice(TRANSPORTS), default="auto", show_default=True,
              help="Load generator's HTTP client: fast (plain http://), aiohttp (TLS, proxies) or auto.")
@click.option("--timeout", "timeout_s", default=30.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Per-request timeout, seconds.")
@click.option("--out", "out", default="results", show_default=True,
              help="Results root; the sweep goes to OUT/<sweep-id>/.")
@click.option("--models", default="models", show_default=True, help="Model base directory (exported if missing).")
@click.option("--model-name", default=None, help="Override the spec's serving.model_name.")
@click.option("--model-arch", type=click.Choice(["resnet50", "tiny"]), default="resnet50", show_default=True,
              help="Architecture to export when the model is missing.")
@click.option("--force", is_flag=True, help="Re-measure Configs that already have results.")
@click.option("--rerun", default=None, help="Repeat the sweep recorded in this results directory into a new one.")
@click.option("--list", "list_only", is_flag=True, help="Print the expanded Configs and exit.")
@click.option("--pricing", default=None, help="Cost table CSV for the report (default: GCP E2 us-central1).")
@click.option("--target-rps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Traffic to provision for: the report recommends the cheapest Config that serves it.")
@click.option("--no-report", is_flag=True, help="Measure only; run //analysis:report later.")
def main(spec_path, backend, kube_context, endpoint, allow_tags, profile, payload, max_in_flight, transport, timeout_s,
         out,
         models, model_name, model_arch, force, rerun, list_only, pricing, target_rps, no_report) -> None:
    """Find the cheapest TF Serving deployment that meets the SLO: deploy, warm up, load and
    tear down every Config of a sweep spec, then write the report and print the recommendation."""
    from deploy.spec import SpecError

    echo = display.Display(sys.stderr)
    recorded = None
    try:
        if rerun:
            sweep, recorded = _rerun_spec(user_path(rerun))
        else:
            path = user_path(spec_path) if spec_path else _bundled(DEFAULT_SPEC)
            sweep = load_spec(path, profile, model_name)
    except (SpecError, OSError) as err:
        raise click.ClickException(str(err)) from None
    spec_backend = "k8s" if sweep.backend == "cluster" else "local"
    if backend and backend != spec_backend:
        raise click.ClickException(
            f"{sweep.source}: this spec is for the {sweep.backend} backend, not {backend}; use a "
            + ("cluster spec such as deploy/sweeps/seed-gke-e2.yaml" if backend == "k8s" else "local spec"))
    backend = spec_backend
    if recorded:
        payload = recorded["load"]["payload"]
        max_in_flight, timeout_s = recorded["load"]["max_in_flight"], recorded["load"]["timeout_s"]
        transport = recorded["load"].get("transport", transport)
    if list_only:
        for c in sweep.configs:
            click.echo(f"{c.id}  {c.name}  replicas={c.replicas} cpu={c.cpu} "
                       f"profile={c.profile['kind']} {c.profile['duration_s']:.0f}s")
        return

    root = user_path(out)
    out_dir = root / (f"{sweep.id}-rerun-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}" if rerun else sweep.id)
    models_dir = user_path(models)
    if backend == "local":
        ensure_model(models_dir, sweep.configs[0].serving.model_name, model_arch, echo.line)
    lock = _bundled("requirements_lock.txt")
    options = sweep_mod.SweepOptions(out_dir=out_dir, payload=payload, max_in_flight=max_in_flight,
                                     transport=transport, timeout_s=timeout_s, force=force, warmup=WarmupOptions(),
                                     lock_path=lock if lock.is_file() else None, repo=_repo())
    echo.line(f"sweep {sweep.name} ({sweep.id}): {len(sweep.configs)} Configs, backend {backend}, "
              f"SLO {display.slo_text(sweep.slo)} -> {out_dir}")
    workdir = root / ".work" / out_dir.name
    target = make_backend(sweep, backend, models_dir, workdir, kube_context, endpoint, allow_tags)
    try:
        outcome = sweep_mod.run_sweep(sweep, target, options, on_event=echo.event)
    except sweep_mod.SweepError as err:
        raise click.ClickException(str(err)) from None
    finally:
        with contextlib.suppress(Exception):
            target.teardown()
    echo.done(outcome)
    if no_report or not any(o.status in ("done", "skipped") for o in outcome.outcomes):
        if outcome.interrupted:
            sys.exit(130)
        return
    from analysis.report import build_report

    report = build_report(out_dir, pricing_csv=user_path(pricing) if pricing else None,
                          slo_p99_ms=sweep.slo.p99_ms, slo_error_rate=sweep.slo.error_rate,
                          target_rps=target_rps, out_dir=out_dir / "report")
    if rerun:
        from analysis.compare import compare_with_baseline, format_comparison

        diff = compare_with_baseline(user_path(rerun), report.analysis)
        diff.to_csv(out_dir / "report" / "compare.csv", index=False)
        echo.line(f"compared with {user_path(rerun)}:\n{format_comparison(diff)}")
    echo.report(report, out_dir / "report")
    if outcome.interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
