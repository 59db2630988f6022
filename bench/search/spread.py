"""How far a capacity moves from run to run: the search on a simulated known queue.

Each simulated sweep runs ``--repeats`` independent searches of one Config (the search
and the probes' sequential rule are the real ones, ``sweep.search`` and
``sweep.probe.Watch``; the queue is the stand-in's, ``tests.standin``), its first guess
off by up to ``--guess-error`` as a short saturation step's is. Over ``--sweeps`` such
sweeps it prints the capacity's median against the truth (``truth_capacity``), its
spread (sd / median), how often two sweeps agree within 10%, and the probes a sweep
took, for each repeat count beside one repeat's, so the ratio is measured in the same run.

  bazel run //bench/search:spread -- [--sweeps 150] [--repeats 1,2,3] [--probe-max 40]
"""

from __future__ import annotations

import functools
import itertools

import click
import numpy as np

from sweep.probe import ProbeRules
from sweep.search import Outcome, combine, drive, search
from tests.standin import simulated_probe
from tests.standin_server import truth_capacity

# name -> (service seconds, replicas): the default sweep's shapes on 2 cores, ResNet50's
# service time scaled from their measured capacities (one 2-CPU replica ~14 req/s)
SETTINGS = {"1 replica, 65 ms": (0.065, 1), "2 replicas, 130 ms": (0.130, 2)}
SLO_MS = 1000.0


def _probe(service_s: float, replicas: int, rules: ProbeRules, seeds, rate: float) -> Outcome:
    return Outcome(rate, simulated_probe(rate, service_s, replicas, rules, next(seeds)))


def sweep_capacities(service_s: float, replicas: int, repeats: int, sweeps: int, rules: ProbeRules,
                     guess_error: float, seed: int) -> tuple[np.ndarray, float]:
    """Each simulated sweep's capacity (the median of its searches) and the mean probes a sweep took."""
    points, probes = [], []
    for k in range(sweeps):
        rng = np.random.default_rng(seed + k)
        seeds = itertools.count((seed + k) * 100_003)
        found, n = [], 0
        for _ in range(repeats):
            guess = replicas / service_s * rng.uniform(1.0 - guess_error, 1.0 + guess_error)
            f, rates = drive(search(guess), functools.partial(_probe, service_s, replicas, rules, seeds))
            found.append(f)
            n += len(rates) - 1
        points.append(combine(found).rps)
        probes.append(n)
    return np.array(points), float(np.mean(probes))


def within(points: np.ndarray, tolerance: float = 0.10) -> float:
    """The fraction of pairs of sweeps whose capacities agree within ``tolerance``."""
    ratio = np.abs(points[:, None] / points[None, :] - 1.0)
    upper = np.triu_indices(len(points), 1)
    return float(np.mean(ratio[upper] <= tolerance))


@click.command()
@click.option("--sweeps", default=150, show_default=True, type=click.IntRange(min=10), help="Simulated sweeps per row.")
@click.option("--repeats", "repeat_list", default="1,2,3", show_default=True, help="Repeat counts to compare.")
@click.option("--probe-max", default=40, show_default=True, type=click.IntRange(min=14), help="Longest probe, s.")
@click.option("--guess-error", default=0.15, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="The first guess is off by up to this fraction.")
@click.option("--seed", default=1, show_default=True, type=int)
def main(sweeps: int, repeat_list: str, probe_max: int, guess_error: float, seed: int) -> None:
    try:
        counts = sorted({int(x) for x in repeat_list.split(",")})
    except ValueError:
        raise click.BadParameter("a comma-separated list of integers", param_hint="--repeats") from None
    if not counts or counts[0] < 1:
        raise click.BadParameter("repeat counts must be >= 1", param_hint="--repeats")
    rules = ProbeRules(latency_ms=SLO_MS, max_s=probe_max)
    click.echo(f"SLO p99 <= {SLO_MS:.0f} ms, probes {rules.min_s}-{rules.max_s} s, {sweeps} simulated sweeps a row")
    click.echo(f"{'setting':20} {'repeats':>7} {'truth':>7} {'median':>7} {'bias':>6} {'sd':>6} "
               f"{'sd/sd(1)':>8} {'P(2 within 10%)':>15} {'probes':>6}")
    for name, (service_s, replicas) in SETTINGS.items():
        truth = truth_capacity(service_s, replicas, SLO_MS / 1000.0)
        base = None
        for r in counts:
            points, probes = sweep_capacities(service_s, replicas, r, sweeps, rules, guess_error, seed)
            median = float(np.median(points))
            sd = float(np.std(points) / median)
            base = sd if base is None else base
            click.echo(f"{name:20} {r:7d} {truth:7.2f} {median:7.2f} {median / truth - 1:+6.1%} {sd:6.1%} "
                       f"{sd / base:8.2f} {within(points):15.0%} {probes:6.1f}")


if __name__ == "__main__":
    main()
