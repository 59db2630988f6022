"""Did the machine stay the same during the sweep? The servers' CPU per request, over time.

A capacity search interleaves its Configs' probes so that drift hits them alike, but drift
still moves every capacity: a machine whose servers spend 20% more CPU per request early
in a sweep reads 20% lower capacities for the probes it made then, and a rerun in a
steadier state disagrees. Where the servers run on the sweep's own machine (the local
backend), each probe's run.json says how much CPU everything but the generator used
(``host_cpu.others``: the servers, and any other process). Per request that is the
servers' cost of one prediction; divided by its Config's median (Configs differ in cost:
batching, threads), it should stay near 1 over the sweep. ``sweep_drift`` compares the
first third of the sweep's probes with the last third.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from analysis.results import Run

MIN_PROBE_S = 20.0  # shorter probes (a quick FAIL, deep in overload) say little about cost
MIN_PROBES = 9  # fewer cannot be split into thirds worth comparing
NOTABLE = 0.10  # a change this large is worth a warning


@dataclass(frozen=True)
class CostSample:
    at: datetime
    config_id: str
    cpu_s_per_request: float


@dataclass(frozen=True)
class Drift:
    first: float  # median relative cost (1.0 = the Config's median) of the first third
    last: float  # ... of the last third
    probes: int
    span_min: float

    @property
    def change(self) -> float:
        return self.last / self.first - 1.0

    @property
    def notable(self) -> bool:
        return abs(self.change) >= NOTABLE

    def text(self) -> str:
        direction = "fell" if self.change < 0 else "rose"
        said = (f"The servers' CPU per request (everything but the generator, relative to each Config's median, "
                f"over {self.probes} probes in {self.span_min:.0f} min) {direction} {abs(self.change):.0%} from the "
                f"sweep's first third to its last ({self.first:.2f} -> {self.last:.2f}).")
        if not self.notable:
            return said + (" The servers' cost per request stayed steady; that does not rule out changes that"
                           " leave it alone (scheduling, other tenants), which show as intervals wider than the"
                           " searches' own.")
        return (said + " The machine was not in a steady state: probes made while it was "
                + ("slower read lower capacities, and a rerun in a steadier state will read higher ones."
                   if self.change < 0 else "faster read higher capacities than later ones."))


def cost_samples(runs: Sequence[Run]) -> list[CostSample]:
    """One sample per valid probe of every local search run that records host_cpu."""
    out = []
    for run in runs:
        if not run.is_search or run.probes is None or (run.config or {}).get("backend") != "local":
            continue
        for p in run.probes.itertuples(index=False):
            if not p.valid or not isinstance(p.dir, str) or not p.dir or p.seconds < MIN_PROBE_S:
                continue
            path = run.dir / p.dir / "run.json"
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a probe whose files are gone says nothing here; the rest still do
            others = (record.get("host_cpu") or {}).get("others")
            ok = (record.get("totals") or {}).get("ok")
            wall = (record.get("host_cpu") or {}).get("wall_s")
            started = record.get("started_at")
            if not (others and ok and wall and started):
                continue
            out.append(CostSample(datetime.fromisoformat(started.replace("Z", "+00:00")), run.id,
                                  others * wall / ok))
    return sorted(out, key=lambda s: s.at)


def sweep_drift(runs: Sequence[Run]) -> Drift | None:
    """The first third's median relative cost against the last third's (None when too few probes)."""
    samples = cost_samples(runs)
    if len(samples) < MIN_PROBES:
        return None
    medians = _config_medians(samples)
    relative = [s.cpu_s_per_request / medians[s.config_id] for s in samples]
    third = len(relative) // 3
    span = (samples[-1].at - samples[0].at).total_seconds() / 60.0
    return Drift(statistics.median(relative[:third]), statistics.median(relative[-third:]), len(samples), span)


@dataclass(frozen=True)
class MachineChange:
    """The servers' CPU per request in two sweeps of the same Configs (a rerun's baseline and the rerun)."""

    before: float  # median CPU-s per request over the Configs in both
    after: float
    configs: int

    @property
    def change(self) -> float:
        return self.after / self.before - 1.0

    def text(self) -> str:
        said = (f"The servers' CPU per request: {self.before:.3f} -> {self.after:.3f} CPU-s ({self.change:+.0%}, "
                f"the median of the {self.configs} Configs measured in both).")
        if abs(self.change) < NOTABLE:
            return said + " The machine was in about the same state both times."
        return (said + " The machine was not in the same state both times, and capacities move with the "
                "cost of a request: compare the two sweeps' capacities with that in mind.")


def machine_change(before: Sequence[Run], after: Sequence[Run]) -> MachineChange | None:
    """Per Config the median cost per request in each sweep; the medians over the Configs
    measured in both (None when none has cost samples in both)."""
    b, a = _config_medians(cost_samples(before)), _config_medians(cost_samples(after))
    both = sorted(set(b) & set(a))
    if not both:
        return None
    return MachineChange(statistics.median(b[c] for c in both), statistics.median(a[c] for c in both), len(both))


def _config_medians(samples: Sequence[CostSample]) -> dict[str, float]:
    """Each Config's median CPU-s per request."""
    by: dict[str, list[float]] = {}
    for s in samples:
        by.setdefault(s.config_id, []).append(s.cpu_s_per_request)
    return {c: statistics.median(v) for c, v in by.items()}
