"""How far a capacity moves from run to run, and whether its interval holds the truth: the
capacity search on a simulated known queue.

Each simulated sweep measures one Config as the sweep does (``tests.standin.simulated_capacity``:
the real search, probe rule and pooled estimate, ``SearchOptions`` deciding how many searches),
its first guesses off by up to ``--guess-error`` as a short saturation step's are, the queue
the stand-in's (``tests.standin``). Over ``--sweeps`` such sweeps it prints, for each way of
spending repeats, the capacity's median against the truth (``truth_capacity``), its spread
(sd / truth), how often the 95% interval held the truth, the interval's median half-width,
how often two sweeps agree within 10%, and the searches and probe-seconds a Config took;
the first row of each setting is the baseline the others are measured against in the same run.
The last columns are the estimate before pooling, measured on the same searches: the median
of the searches' own crossings (each bisected on single probes' verdicts).

  bazel run //bench/search:spread -- [--sweeps 150] [--plans 2,2-4,4] [--precision 0.10] [--probe-max 40]
"""

from __future__ import annotations

import itertools

import click
import numpy as np

from sweep.plan import SearchOptions
from sweep.probe import ProbeRules
from tests.standin import simulated_capacity, simulated_truth
from tests.standin_server import truth_capacity

# name -> (service seconds, replicas, discipline): the default sweep's shapes on 2 cores,
# ResNet50's service time scaled from their measured capacities (one 2-CPU replica ~14
# req/s); FIFO as the stand-in server queues, processor sharing as a server running every
# request at once on its threads roughly does
SETTINGS = {"1 replica, 65 ms": (0.065, 1, "fifo"), "2 replicas, 130 ms": (0.130, 2, "fifo"),
            "1 replica, 65 ms, PS": (0.065, 1, "ps")}
SLO_MS = 1000.0


def plans(text: str, precision: float) -> list[SearchOptions]:
    """``2`` (exactly two searches), ``2-4`` (two, then up to four for precision)."""
    out = []
    for item in text.split(","):
        lo, _, hi = item.strip().partition("-")
        least, most = int(lo), int(hi or lo)
        out.append(SearchOptions(repeats=least, max_repeats=most, precision=precision if most > least else 0.0))
    return out


def truth(service_s: float, replicas: int, discipline: str) -> float:
    if discipline == "fifo":
        return truth_capacity(service_s, replicas, SLO_MS / 1000.0)
    return simulated_truth(service_s, replicas, SLO_MS / 1000.0, discipline)


def measure(service_s: float, replicas: int, discipline: str, truth_rps: float, options: SearchOptions,
            rules: ProbeRules, sweeps: int, guess_error: float, seed: int) -> dict:
    points, medians, held, widths, searches, probes = [], [], [], [], [], []
    for k in range(sweeps):
        rng = np.random.default_rng(seed + k)
        raw = replicas / service_s
        guesses = (raw * rng.uniform(1.0 - guess_error, 1.0 + guess_error) for _ in itertools.count())
        cap = simulated_capacity(service_s, replicas, rules, options, guesses, itertools.count((seed + k) * 100_003),
                                 discipline)
        points.append(cap.rps / truth_rps)
        medians.append(float(np.median(cap.points)) / truth_rps)
        held.append(cap.lo <= truth_rps <= cap.hi)
        widths.append(cap.half_width)
        searches.append(cap.repeats)
        probes.append(cap.probes)
    v, old = np.array(points), np.array(medians)
    return {"truth": truth_rps, "bias": float(np.median(v) - 1.0), "sd": float(np.std(v)), "held": float(np.mean(held)),
            "width": float(np.median(widths)), "within": within(v), "searches": float(np.mean(searches)),
            "probes": float(np.mean(probes)), "old_bias": float(np.median(old) - 1.0), "old_sd": float(np.std(old)),
            "old_within": within(old)}


def within(v: np.ndarray, tolerance: float = 0.10) -> float:
    """The fraction of pairs of sweeps whose capacities agree within ``tolerance``."""
    return float(np.mean(np.abs(v[:, None] / v[None, :] - 1.0)[np.triu_indices(len(v), 1)] <= tolerance))


@click.command()
@click.option("--sweeps", default=150, show_default=True, type=click.IntRange(min=10), help="Simulated sweeps per row.")
@click.option("--plans", "plan_text", default="2,2-4,4", show_default=True,
              help="How many searches: N (exactly), or N-M (N, then up to M while the interval is wider than "
                   "--precision).")
@click.option("--precision", default=SearchOptions().precision, show_default=True, type=click.FloatRange(0.0, 0.99),
              help="Target half-width of the 95% interval for N-M plans.")
@click.option("--probe-max", default=40, show_default=True, type=click.IntRange(min=14), help="Longest probe, s.")
@click.option("--guess-error", default=0.15, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="The first guess is off by up to this fraction.")
@click.option("--seed", default=1, show_default=True, type=int)
def main(sweeps: int, plan_text: str, precision: float, probe_max: int, guess_error: float, seed: int) -> None:
    try:
        chosen = plans(plan_text, precision)
    except ValueError as err:
        raise click.BadParameter(f"a comma-separated list of N or N-M (N <= M): {err}", param_hint="--plans") from None
    rules = ProbeRules(latency_ms=SLO_MS, max_s=probe_max)
    click.echo(f"SLO p99 <= {SLO_MS:.0f} ms, probes {rules.min_s}-{rules.max_s} s, {sweeps} simulated sweeps a row")
    click.echo(f"{'setting':22} {'searches':>8} {'truth':>6} {'bias':>6} {'sd':>5} {'sd/base':>7} {'CI held':>7} "
               f"{'CI +-':>6} {'P(2 within 10%)':>15} {'mean searches':>13} {'pooled':>6} | median of searches: "
               f"{'bias':>6} {'sd':>5} {'P(2 within 10%)':>15}")
    for name, (service_s, replicas, discipline) in SETTINGS.items():
        base, truth_rps = None, truth(service_s, replicas, discipline)
        for options in chosen:
            m = measure(service_s, replicas, discipline, truth_rps, options, rules, sweeps, guess_error, seed)
            base = base or m["sd"]
            label = str(options.repeats) if options.most_repeats == options.repeats else \
                f"{options.repeats}-{options.max_repeats}"
            click.echo(f"{name:22} {label:>8} {m['truth']:6.2f} {m['bias']:+6.1%} {m['sd']:5.1%} "
                       f"{m['sd'] / base:7.2f} {m['held']:7.0%} {m['width']:6.1%} {m['within']:15.0%} "
                       f"{m['searches']:13.1f} {m['probes']:6.1f} |                     {m['old_bias']:+6.1%} "
                       f"{m['old_sd']:5.1%} {m['old_within']:15.0%}")


if __name__ == "__main__":
    main()
