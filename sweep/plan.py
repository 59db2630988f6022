"""The capacity search's options and its time plan: what a sweep will cost before it runs,
how long is left while it runs (``Eta``), and what to give up to fit a budget."""

from __future__ import annotations

import dataclasses
import math
import statistics

from formats.slo import Slo
from sweep.estimate import Capacity
from sweep.probe import ProbeRules
from sweep.search import SearchRules


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    repeats: int = 2  # searches per Config at least
    # ... and up to max_repeats while the 95% interval is wider than +-precision: at ResNet50's time
    # scale (p99 <= 1 s) two searches leave it at ~+-21%, four at ~+-13% (bench/search:spread)
    max_repeats: int = 4
    precision: float = 0.10  # 0: exactly ``repeats`` searches
    resolution: float = 0.03
    confidence: float = 0.95
    max_probe_s: int = 40
    min_probe_s: int = 13
    transient_s: int = 3
    seed: int = 1  # interleaving order and the probes' arrival seeds
    saturation_s: float = 5.0
    budget_s: float | None = None  # no further searches once the sweep's probing has taken this long

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError("repeats must be >= 1")
        if self.max_repeats < self.repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) must be >= repeats ({self.repeats})")
        if not 0.0 <= self.precision < 1.0:
            raise ValueError("precision must lie in [0, 1)")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError("confidence must lie in [0.5, 1)")
        self.search_rules()  # their own checks
        ProbeRules(latency_ms=1.0, transient_s=self.transient_s, min_s=self.min_probe_s, max_s=self.max_probe_s)

    def probe_rules(self, slo: Slo) -> ProbeRules:
        return ProbeRules.from_slo(slo, confidence=self.confidence, transient_s=self.transient_s,
                                   min_s=self.min_probe_s, max_s=self.max_probe_s)

    def search_rules(self) -> SearchRules:
        return SearchRules(resolution=self.resolution)

    @classmethod
    def given(cls, values: dict) -> SearchOptions:
        """The options a user gave (flags by field, None or absent: the default). ``--repeats
        N`` alone raises the most searches to at least N."""
        given = {k: v for k, v in values.items() if v is not None}
        if "repeats" in given and "max_repeats" not in given:
            given["max_repeats"] = max(given["repeats"], cls().max_repeats)
        return cls(**given)

    @property
    def most_repeats(self) -> int:
        """Searches a Config may get: ``max_repeats`` when more are run for precision."""
        return self.max_repeats if self.precision > 0 else self.repeats

    def wants_more(self, cap: Capacity, searches: int) -> bool:
        """Whether a Config with ``searches`` searches so far and capacity ``cap`` gets another."""
        if searches < self.repeats:
            return True
        width = cap.half_width
        return searches < self.most_repeats and cap.rps is not None and width is not None and width > self.precision

    def record(self) -> dict:
        return dataclasses.asdict(self)


class Eta:
    """Seconds left: probes expected (``expected_probes`` a search, or what searches took)
    times the measured seconds a probe costs, drain and bookkeeping included. A search's
    first probe (at the saturation guess, above capacity: a FAIL within seconds) and its
    later ones (near capacity: mostly their longest) are costed apart, so the quick first
    probes do not make the sweep's start promise half the time it takes."""

    def __init__(self, searches: int, options: SearchOptions) -> None:
        self.expected = expected_probes(options)
        self.left = searches
        self.done_probes: list[int] = []
        self.first_costs: list[float] = []
        self.later_costs: list[float] = []
        self.default_probe_s = probe_cost_s(options)
        self.running: dict[tuple[int, int], int] = {}

    def probe(self, key: tuple[int, int], seconds: float) -> None:
        self.running[key] = self.running.get(key, 0) + 1
        (self.first_costs if self.running[key] == 1 else self.later_costs).append(seconds)

    def finish(self, key: tuple[int, int]) -> None:
        self.done_probes.append(self.running.pop(key, 0))
        self.left -= 1

    def drop(self, searches: int) -> None:
        """Searches planned that will not run (a Config precise enough sooner)."""
        self.left = max(0, self.left - searches)

    def eta(self) -> float:
        per_search = (sum(self.done_probes) / len(self.done_probes)) if self.done_probes else self.expected
        first = statistics.fmean(self.first_costs) if self.first_costs else self.default_probe_s
        later = statistics.fmean(self.later_costs) if self.later_costs else self.default_probe_s
        seconds = sum(max(1.0, per_search - n) for n in self.running.values()) * later
        unstarted = max(0, self.left - len(self.running))
        return seconds + unstarted * (first + max(0.0, per_search - 1.0) * later)


def expected_probes(options: SearchOptions) -> float:
    """Probes a search is expected to take: about two to bracket, then the bisections."""
    rules = options.search_rules()
    return 2.0 + math.ceil(math.log2(math.log(rules.step) / math.log1p(rules.resolution)))


def probe_cost_s(options: SearchOptions) -> float:
    """Expected seconds a probe costs: most probes near capacity run to ``max_probe_s``
    (the default ResNet50 sweep: 23 probes, 32 s each with 13-40 s probes), plus the drain."""
    return 0.75 * options.max_probe_s + 0.25 * options.min_probe_s + 2.0


def plan_seconds(configs: int, options: SearchOptions) -> float:
    """Expected duration of a search sweep's probing before it starts: every Config given
    its most searches (at ResNet50's time scale most Configs take them)."""
    return configs * options.most_repeats * expected_probes(options) * probe_cost_s(options)


def fit_budget(configs: int, options: SearchOptions, budget_s: float) -> tuple[SearchOptions, list[str]]:
    """Fewer searches for precision, then fewer repeats, then a coarser resolution, then
    shorter probes, until the plan fits ``budget_s``; the sweep also starts no further
    search once its probing has taken ``budget_s``. Returns the options and what was given
    up, in words."""
    given_up = []
    options = dataclasses.replace(options, budget_s=budget_s)
    most = options.most_repeats
    while plan_seconds(configs, options) > budget_s and options.max_repeats > options.repeats:
        options = dataclasses.replace(options, max_repeats=options.max_repeats - 1)
    repeats = options.repeats
    while plan_seconds(configs, options) > budget_s and options.repeats > 1:
        options = dataclasses.replace(options, repeats=options.repeats - 1, max_repeats=options.repeats - 1)
    if options.most_repeats != most:
        given_up.append(f"searches per Config up to {most} -> {options.most_repeats}"
                        + (f" (at least {repeats} -> {options.repeats})" if options.repeats != repeats else ""))
    for resolution in (0.05, 0.10):
        if plan_seconds(configs, options) > budget_s and options.resolution < resolution:
            given_up.append(f"resolution {options.resolution:.0%} -> {resolution:.0%}")
            options = dataclasses.replace(options, resolution=resolution)
    for max_s in (30, 20):
        if plan_seconds(configs, options) > budget_s and options.max_probe_s > max_s:
            given_up.append(f"longest probe {options.max_probe_s} s -> {max_s} s")
            options = dataclasses.replace(options, max_probe_s=max_s, min_probe_s=min(options.min_probe_s, max_s))
    return options, given_up
