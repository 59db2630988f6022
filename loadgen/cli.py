"""`loadgen:run` — one open-loop measurement from the command line (thin over run.run)."""

from __future__ import annotations

import sys

import click

from formats import units
from loadgen import flags, schedule
from loadgen import run as run_mod
from loadgen.payload import PayloadError
from loadgen.run import OptionsError, Progress, RunOptions
from loadgen.schedule import Profile, ScheduleError
from tools.python.runpath import user_path


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_progress(p: Progress) -> str:
    return (f"[{p.t_s:>4d}/{p.duration_s:g}s] target {p.target_rps:8.1f}/s  sent "
            f"{p.sent_rps:6d}/s  ok {p.ok:8d}  err {p.errors:6d}  in-flight {p.in_flight:5d}"
            f"  p50 {_fmt(p.p50_ms)} ms  p99 {_fmt(p.p99_ms)} ms")


def format_summary(record: dict, out_dir: str) -> str:
    lines = [f"{'latency (ms)':<14}{'count':>9}{'mean':>10}{'p50':>10}{'p90':>10}"
             f"{'p99':>10}{'p99.9':>10}{'max':>10}"]
    for name in ("corrected", "uncorrected"):
        s = record["latency_ms"][name]
        lines.append(f"{name:<14}{s['count']:>9d}" + "".join(
            f"{_fmt(s[k]):>10}" for k in ("mean", "p50", "p90", "p99", "p99_9", "max")))
    lag = record["send_lag_ms"]
    lines.append(f"{'send lag':<14}{'':>9}{'':>10}{_fmt(lag['p50']):>10}{'':>10}"
                 f"{_fmt(lag['p99']):>10}{'':>10}{_fmt(lag['max']):>10}")
    t = record["totals"]
    classes = ", ".join(f"{k} {v}" for k, v in t["error_classes"].items() if v) or "none"
    rate = t["sent"] / record["duration_s"] if record["duration_s"] else 0.0
    lines.append(f"scheduled {t['scheduled']}  sent {t['sent']} ({rate:.1f}/s)  ok {t['ok']}"
                 f"  errors {t['errors']} ({classes})")
    v = record["validity"]
    if v.get("send_lag_bound_ms") is not None:
        lines.append(f"send lag p99 bound {v['send_lag_bound_ms']:g} ms ({v['send_lag_rule']})")
    sched = record.get("scheduler")
    if sched:
        lines.append(f"send timing {sched['send_timing']} ({sched['timer']}), "
                     f"priority {sched['priority']}")
    cpu = record.get("host_cpu")
    if cpu:
        lines.append(f"CPUs: {cpu['cpus']}; generator {cpu['ours']:.2f}, other processes "
                     f"{cpu['others']:.2f}, hypervisor steal {cpu['steal']:.2f}")
    lines.append("valid: yes" if v["valid"] else "valid: NO — " + "; ".join(v["reasons"]))
    if not record["complete"]:
        lines.append("run stopped early: files hold what was measured")
    lines.append(f"results: {out_dir}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--target", "targets", multiple=True, required=True,
              help="TF Serving REST predict URL (http://HOST:8501/v1/models/M:predict) or gRPC "
              "target (grpc://HOST:8500/M); repeat for round-robin over replicas.")
@click.option("--profile", type=click.Choice(schedule.KINDS), default="constant",
              show_default=True, help="Arrival-rate profile.")
@click.option("--rate", type=float, help="constant: requests per second.")
@click.option("--users", type=int, help="ramp: users at the plateau.")
@click.option("--spawn-rate", type=float, default=1.0, show_default=True,
              help="ramp: users added per second.")
@click.option("--per-user-rps", type=float, default=1.0, show_default=True,
              help="ramp: requests per second per user.")
@click.option("--steps", "steps_text", help='steps: "RATE:DURATION,..." e.g. "50:60s,100:60s".')
@click.option("--duration", default=None, help="Run length, e.g. 30s, 5m "
              "(default 30s; steps: their total).")
@click.option("--arrivals", type=click.Choice(schedule.ARRIVALS), default="uniform",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for poisson.")
@click.option("--slo-p99", "slo_p99", default=None,
              help="The latency bound the run is judged against, e.g. 1s (sets the "
              "default --max-send-lag).")
@flags.generator_flags
@click.option("--out", "out_dir", required=True, help="Results directory.")
@click.option("--quiet", is_flag=True, help="No live progress line.")
def main(targets, profile, rate, users, spawn_rate, per_user_rps, steps_text, duration,
         arrivals, seed, slo_p99, out_dir, quiet, **generator):
    """Send open-loop load to TF Serving's REST or gRPC API and record CO-free latency.

    Durations are 250ms, 1.5s, 5m or 1h; a bare number is seconds (for every option)."""
    try:
        steps = schedule.parse_steps(steps_text) if steps_text else None
        if duration is not None:
            duration_s = units.parse_duration(duration, positive=True)
        elif steps:
            duration_s = sum(s for _, s in steps)
        else:
            duration_s = 30.0
        prof = Profile(kind=profile, duration_s=duration_s, arrivals=arrivals, seed=seed,
                       rate=rate if profile == "constant" else None,
                       users=users if profile == "ramp" else None,
                       spawn_rate=spawn_rate if profile == "ramp" else None,
                       per_user_rps=per_user_rps if profile == "ramp" else None,
                       steps=steps if profile == "steps" else None)
        given = flags.pop_generator_flags(generator)
        options = RunOptions.of(
            flags.resolve(given), targets=tuple(targets), profile=prof,
            slo_latency_ms=units.parse_duration_ms(slo_p99, positive=True) if slo_p99 else None)
        choice = run_mod.choose_transport(options)
    except (ScheduleError, OptionsError, PayloadError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    if not quiet or choice.kind != "fast":
        click.echo(f"transport: {choice.kind} ({choice.reason})", err=True)

    tty = sys.stderr.isatty()

    def show(p: Progress) -> None:
        if quiet:
            return
        if tty:
            click.echo("\r" + format_progress(p), nl=False, err=True)
        elif p.t_s % 10 == 0:
            click.echo(format_progress(p), err=True)

    try:
        result = run_mod.run(options, str(user_path(out_dir)), on_progress=show, choice=choice)
    except PayloadError as e:  # raised before anything is sent or written
        raise click.UsageError(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write results: {e}") from None
    if tty and not quiet:
        click.echo("", err=True)
    click.echo(format_summary(result.record, str(user_path(out_dir))))
    sys.exit(0 if result.complete else 130)


if __name__ == "__main__":
    main()
